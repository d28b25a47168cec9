"""Self-attention and transformer blocks: a plain float64 reference, torch's own multi-head
attention, hand-checked scaling, causality, padding, dead rows, weights and dropout."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recstack.errors import ConfigError  # noqa: E402
from recstack.models.neural.attention import (  # noqa: E402
    MultiHeadSelfAttention,
    TransformerBlock,
    TransformerEncoder,
    _attention_mask,
)

#: (B, L, D, H) shapes for the reference checks, one head up to many, length 1 included
SHAPES = [(1, 1, 4, 1), (2, 5, 8, 2), (3, 7, 12, 3), (2, 6, 16, 4), (4, 9, 8, 8)]


def _padding(batch: int, length: int, kind: str, seed: int = 0):
    """A (B, L) bool padding mask: None, right- or left-padded, with the last row all padding."""
    if kind == "none":
        return None
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, length + 1, size=batch)
    lengths[-1] = 0  # an all-padding sequence
    pos = np.arange(length)
    pad = pos >= lengths[:, None] if kind == "right" else pos < (length - lengths)[:, None]
    return torch.from_numpy(pad)


def reference(attn: MultiHeadSelfAttention, x, causal: bool, padding) -> np.ndarray:
    """Self-attention written out with loops over batch, heads and queries, in float64."""
    w_qkv = attn.qkv.weight.detach().double().numpy()
    b_qkv = attn.qkv.bias.detach().double().numpy()
    w_out = attn.out.weight.detach().double().numpy()
    b_out = attn.out.bias.detach().double().numpy()
    x = x.detach().double().numpy()
    batch, length, dim = x.shape
    heads, d_k = attn.heads, dim // attn.heads
    pad = np.zeros((batch, length), bool) if padding is None else padding.numpy()
    out = np.zeros((batch, length, dim))
    for b in range(batch):
        qkv = x[b] @ w_qkv.T + b_qkv  # (L, 3D)
        q, k, v = qkv[:, :dim], qkv[:, dim : 2 * dim], qkv[:, 2 * dim :]
        ctx = np.zeros((length, dim))
        for h in range(heads):
            cols = slice(h * d_k, (h + 1) * d_k)
            for i in range(length):
                keys = [j for j in range(length) if not pad[b, j] and (j <= i or not causal)]
                if not keys:
                    continue
                s = np.array([q[i, cols] @ k[j, cols] / math.sqrt(d_k) for j in keys])
                p = np.exp(s - s.max())
                ctx[i, cols] = (p / p.sum()) @ v[keys, cols]
        out[b] = ctx @ w_out.T + b_out
        for i in range(length):
            if not any(not pad[b, j] and (j <= i or not causal) for j in range(length)):
                out[b, i] = 0.0  # a query that sees nothing returns zeros
    return out


@pytest.mark.parametrize(("batch", "length", "dim", "heads"), SHAPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("pad_kind", ["none", "right", "left"])
def test_both_paths_match_the_float64_reference(batch, length, dim, heads, causal, pad_kind):
    torch.manual_seed(batch * 100 + length)
    attn = MultiHeadSelfAttention(dim, heads).double().eval()
    x = torch.randn(batch, length, dim, dtype=torch.float64)
    padding = _padding(batch, length, pad_kind, seed=length)
    expected = reference(attn, x, causal, padding)
    explicit, _ = attn(x, causal=causal, padding=padding, return_weights=True)
    fast = attn(x, causal=causal, padding=padding)
    np.testing.assert_allclose(explicit.detach().numpy(), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fast.detach().numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("pad_kind", ["none", "right", "left"])
def test_fast_path_equals_explicit_path_in_float32(causal, pad_kind):
    torch.manual_seed(1)
    attn = MultiHeadSelfAttention(32, 4).eval()
    x = torch.randn(8, 20, 32)
    padding = _padding(8, 20, pad_kind)
    explicit, _ = attn(x, causal=causal, padding=padding, return_weights=True)
    fast = attn(x, causal=causal, padding=padding)
    torch.testing.assert_close(fast, explicit, rtol=1e-5, atol=1e-5)


def test_fast_path_runs_the_fused_kernel(monkeypatch):
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    attn = MultiHeadSelfAttention(8, 2)
    x = torch.randn(2, 4, 8)
    attn(x, causal=True)
    attn(x, causal=True, padding=torch.zeros(2, 4, dtype=torch.bool))
    attn(x, causal=True, return_weights=True)
    assert len(calls) == 2
    assert calls[0]["is_causal"] and calls[0].get("attn_mask") is None
    assert calls[1]["attn_mask"].dtype == torch.bool


@pytest.mark.parametrize(("batch", "length", "dim", "heads"), [(2, 6, 16, 4), (3, 5, 12, 1)])
def test_agrees_with_torch_multihead_attention(batch, length, dim, heads):
    torch.manual_seed(2)
    ours = MultiHeadSelfAttention(dim, heads).eval()
    theirs = torch.nn.MultiheadAttention(dim, heads, batch_first=True).eval()
    with torch.no_grad():
        theirs.in_proj_weight.copy_(ours.qkv.weight)
        theirs.in_proj_bias.copy_(ours.qkv.bias)
        theirs.out_proj.weight.copy_(ours.out.weight)
        theirs.out_proj.bias.copy_(ours.out.bias)
    x = torch.randn(batch, length, dim)
    future = torch.ones(length, length, dtype=torch.bool).triu(1)  # True = not allowed
    want, want_w = theirs(x, x, x, attn_mask=future, average_attn_weights=False)
    got, got_w = ours(x, causal=True, return_weights=True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_w, want_w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours(x, causal=True), want, rtol=1e-5, atol=1e-6)
    # right padding without dead rows: torch's key_padding_mask means the same
    padding = torch.arange(length) >= torch.tensor([length, 2, 1][:batch])[:, None]
    want = theirs(x, x, x, key_padding_mask=padding, need_weights=False)[0]
    torch.testing.assert_close(ours(x, causal=False, padding=padding), want, rtol=1e-5, atol=1e-6)


def _identity_attention() -> MultiHeadSelfAttention:
    """D = 2, one head, Q = K = V = x and an identity output projection."""
    attn = MultiHeadSelfAttention(2, 1).eval()
    with torch.no_grad():
        attn.qkv.weight.copy_(torch.eye(2).repeat(3, 1))
        attn.qkv.bias.zero_()
        attn.out.weight.copy_(torch.eye(2))
        attn.out.bias.zero_()
    return attn


@pytest.mark.parametrize("return_weights", [False, True])
def test_scores_are_scaled_by_one_over_sqrt_dk(return_weights):
    # tokens a = (2, 0), b = (0, 1); d_k = 2. Query a: scores (a.a, a.b)/sqrt(2) = (4, 0)/sqrt(2),
    # so a's weight on itself is sigmoid(4/sqrt(2)) = 0.944 (unscaled: 0.982, /d_k: 0.881).
    # Query b: scores (0, 1)/sqrt(2), weight on a is sigmoid(-1/sqrt(2)) = 0.330.
    x = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])
    res = _identity_attention()(x, causal=False, return_weights=return_weights)
    out = res[0] if return_weights else res
    w_aa = 1 / (1 + math.exp(-4 / math.sqrt(2)))
    w_ba = 1 / (1 + math.exp(1 / math.sqrt(2)))
    expected = torch.tensor([[[2 * w_aa, 1 - w_aa], [2 * w_ba, 1 - w_ba]]])
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    if return_weights:
        torch.testing.assert_close(
            res[1], torch.tensor([[[[w_aa, 1 - w_aa], [w_ba, 1 - w_ba]]]]), rtol=1e-6, atol=1e-6
        )
    # causal: a sees only itself, b sees both as before
    out = _identity_attention()(x, causal=True)
    expected[0, 0] = x[0, 0]
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


def _modules(dropout: float = 0.0):
    """One of each module, D = 16, H = 4, with both block layouts."""
    return {
        "attention": MultiHeadSelfAttention(16, 4, dropout),
        "block-pre": TransformerBlock(16, 4, dropout),
        "block-post": TransformerBlock(16, 4, dropout, activation="relu", pre_norm=False),
        "encoder-pre": TransformerEncoder(16, 4, 2, dropout, ffn_dim=24),
        "encoder-post": TransformerEncoder(16, 4, 2, dropout, pre_norm=False),
    }


def _call(module, x, padding, return_weights, causal=True):
    res = module(x, causal=causal, padding=padding, return_weights=return_weights)
    return res[0] if return_weights else res


@pytest.mark.parametrize("name", list(_modules()))
@pytest.mark.parametrize("return_weights", [False, True])
def test_causal_outputs_do_not_see_the_future(name, return_weights):
    torch.manual_seed(3)
    module = _modules()[name].eval()
    x = torch.randn(3, 8, 16)
    padding = torch.arange(8) < torch.tensor([0, 2, 5])[:, None]  # left padding
    base = _call(module, x, padding, return_weights)
    for t in range(7):
        changed = x.clone()
        changed[:, t + 1 :] = torch.randn(3, 7 - t, 16)
        out = _call(module, changed, padding, return_weights)
        torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], rtol=0, atol=1e-6)
        assert not torch.allclose(out[0, t + 1 :], base[0, t + 1 :])  # the test can fail
    # without the causal mask the past does see the future
    base = _call(module, x, padding, return_weights, causal=False)
    changed = x.clone()
    changed[:, -1] = torch.randn(3, 16)  # not a constant shift, which LayerNorm removes
    out = _call(module, changed, padding, return_weights, causal=False)
    assert not torch.allclose(out[0, 0], base[0, 0])


@pytest.mark.parametrize("name", list(_modules()))
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("pad_kind", ["right", "left"])
def test_padded_inputs_do_not_leak(name, causal, pad_kind):
    torch.manual_seed(4)
    module = _modules()[name].eval()
    x = torch.randn(4, 7, 16)
    padding = _padding(4, 7, pad_kind, seed=5)
    base = module(x, causal=causal, padding=padding)
    changed = x.clone()
    changed[padding] = 10 * torch.randn(int(padding.sum()), 16)
    out = module(changed, causal=causal, padding=padding)
    valid = ~padding
    torch.testing.assert_close(out[valid], base[valid], rtol=0, atol=1e-6)
    assert torch.isfinite(out).all()
    if name != "attention":  # blocks and encoders zero their padded outputs
        assert out[padding].eq(0).all()
    if causal and pad_kind == "right":
        return  # the causal mask alone hides trailing padding
    # without the padding mask the change does reach the valid positions
    assert not torch.allclose(module(changed, causal=causal)[valid], base[valid])


@pytest.mark.parametrize("name", list(_modules()))
@pytest.mark.parametrize("return_weights", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_dead_rows_give_no_nan_in_forward_or_backward(name, return_weights, causal):
    torch.manual_seed(6)
    module = _modules(dropout=0.2)[name].train()
    x = torch.randn(3, 6, 16, requires_grad=True)
    # row 0 left-padded (dead queries under the causal mask), row 1 all padding, row 2 full
    padding = torch.arange(6) < torch.tensor([3, 6, 0])[:, None]
    out = _call(module, x, padding, return_weights, causal=causal)
    assert torch.isfinite(out).all()
    if name == "attention" and causal:
        assert out[0, :3].eq(0).all()
    assert out[1].eq(0).all()
    loss = (out[~padding] ** 2).sum()
    loss.backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[padding].eq(0).all()  # padded inputs do not influence valid outputs
    assert x.grad[~padding].abs().sum() > 0
    for param in module.parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("pad_kind", ["none", "right", "left"])
def test_mask_unmasks_dead_rows_and_reports_them(causal, pad_kind):
    # a softmax over no key is NaN; some kernels hide it, older ones and some GPUs do not
    padding = _padding(5, 6, pad_kind, seed=13)
    allowed, alive = _attention_mask(
        5, 6, causal=causal, padding=padding, device=torch.device("cpu")
    )
    assert allowed.shape == (5, 1, 6, 6) and alive.shape == (5, 6, 1)
    pad = np.zeros((5, 6), bool) if padding is None else padding.numpy()
    for b in range(5):
        for i in range(6):
            keys = [not pad[b, j] and (j <= i or not causal) for j in range(6)]
            assert alive[b, i, 0].item() == any(keys)
            want = keys if any(keys) else [True] * 6
            assert allowed[b, 0, i].tolist() == want


@pytest.mark.parametrize("causal", [False, True])
def test_weights_are_distributions_over_allowed_keys(causal):
    torch.manual_seed(7)
    attn = MultiHeadSelfAttention(24, 3, dropout=0.5).eval()
    x = torch.randn(4, 9, 24)
    padding = _padding(4, 9, "left", seed=8)
    _, weights = attn(x, causal=causal, padding=padding, return_weights=True)
    assert weights.shape == (4, 3, 9, 9)
    allowed = ~padding[:, None, None, :] & (
        torch.ones(9, 9, dtype=torch.bool).tril() if causal else torch.ones(9, 9, dtype=torch.bool)
    )  # (B, 1, L, L)
    alive = allowed.any(-1)  # (B, 1, L)
    assert weights.masked_select(~allowed).eq(0).all()
    assert (weights[~alive.expand(-1, 3, -1)] == 0).all()
    sums = weights.sum(-1)
    torch.testing.assert_close(sums[alive.expand(-1, 3, -1)], torch.ones(int(alive.sum()) * 3))
    assert (weights.masked_select(allowed) > 0).all()


def test_encoder_returns_weights_per_layer():
    torch.manual_seed(9)
    encoder = TransformerEncoder(16, 2, layers=3, dropout=0.1).eval()
    x = torch.randn(2, 5, 16)
    out, weights = encoder(x, causal=True, return_weights=True)
    assert len(weights) == 3
    assert all(w.shape == (2, 2, 5, 5) for w in weights)
    torch.testing.assert_close(out, encoder(x, causal=True), rtol=1e-5, atol=1e-6)
    # the weights are each block's own attention, recomputed here block by block
    h = x
    for block, w in zip(encoder.blocks, weights, strict=True):
        torch.testing.assert_close(
            w, block.attention(block.norm1(h), causal=True, return_weights=True)[1]
        )
        h = block(h, causal=True)
    torch.testing.assert_close(encoder.norm(h), out)


@pytest.mark.parametrize("name", list(_modules()))
@pytest.mark.parametrize("return_weights", [False, True])
def test_dropout_only_in_training(name, return_weights):
    torch.manual_seed(10)
    module = _modules(dropout=0.5)[name]
    x = torch.randn(2, 6, 16)
    padding = torch.arange(6) < torch.tensor([2, 0])[:, None]
    module.eval()
    first = _call(module, x, padding, return_weights)
    torch.testing.assert_close(_call(module, x, padding, return_weights), first, rtol=0, atol=0)
    module.train()
    torch.manual_seed(11)
    noisy = _call(module, x, padding, return_weights)
    torch.manual_seed(12)
    assert not torch.allclose(noisy, _call(module, x, padding, return_weights))
    assert not torch.allclose(noisy, first)
    # without dropout, training and evaluation agree
    plain = _modules(dropout=0.0)[name]
    plain.load_state_dict(module.state_dict())
    torch.testing.assert_close(
        _call(plain.train(), x, padding, return_weights), _call(plain.eval(), x, padding, False)
    )


def test_bad_configuration_raises_config_error():
    with pytest.raises(ConfigError, match=r"dim=10 and heads=3"):
        MultiHeadSelfAttention(10, 3)
    with pytest.raises(ConfigError, match=r"dim=12 and heads=8"):
        TransformerEncoder(12, 8, 2, 0.1)
    with pytest.raises(ConfigError, match=r"heads=0"):
        MultiHeadSelfAttention(8, 0)
    with pytest.raises(ConfigError, match=r"dropout=1\.0"):
        MultiHeadSelfAttention(8, 2, dropout=1.0)
    with pytest.raises(ConfigError, match=r"dropout=-0\.1"):
        TransformerBlock(8, 2, dropout=-0.1)
    with pytest.raises(ConfigError, match=r"activation='tanh'"):
        TransformerBlock(8, 2, 0.0, activation="tanh")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"ffn_dim=0"):
        TransformerBlock(8, 2, 0.0, ffn_dim=0)
    with pytest.raises(ConfigError, match=r"layers=0"):
        TransformerEncoder(8, 2, 0, 0.0)


def test_bad_input_shapes_raise():
    attn = MultiHeadSelfAttention(8, 2)
    with pytest.raises(ValueError, match=r"x must have shape \(B, L, 8\), got \(2, 5, 6\)"):
        attn(torch.randn(2, 5, 6), causal=True)
    with pytest.raises(ValueError, match=r"padding must be a bool tensor of shape \(2, 5\)"):
        attn(torch.randn(2, 5, 8), causal=True, padding=torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"got torch.bool of shape \(2, 4\)"):
        attn(torch.randn(2, 5, 8), causal=True, padding=torch.zeros(2, 4, dtype=torch.bool))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("pad_kind", ["none", "right", "left"])
@pytest.mark.parametrize("pre_norm", [True, False])
def test_last_only_equals_the_last_row_of_the_full_pass(causal, pad_kind, pre_norm):
    torch.manual_seed(0)
    encoder = TransformerEncoder(dim=16, heads=4, layers=3, dropout=0.0, pre_norm=pre_norm)
    x = torch.randn(5, 7, 16)
    padding = _padding(5, 7, pad_kind)
    with torch.no_grad():
        full = encoder(x, causal=causal, padding=padding)
        last = encoder(x, causal=causal, padding=padding, last_only=True)
    assert last.shape == (5, 1, 16)
    torch.testing.assert_close(last, full[:, -1:], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="last_only"):
        encoder(x, causal=causal, last_only=True, return_weights=True)


@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("pre_norm", [True, False])
@pytest.mark.parametrize("start", [0, 4, 6])
def test_resumed_variants_equal_their_full_pass(layers, pre_norm, start):
    """Variants of a causal pass's rows that keep their older columns give the last state
    of their full sequences, though only their newer columns run."""
    torch.manual_seed(0)
    encoder = TransformerEncoder(16, 4, layers, 0.0, pre_norm=pre_norm).eval()
    x = torch.randn(4, 7, 16)
    pads = [0, 2, 4, 7]  # left padding per row; the last row is empty
    padding = torch.arange(7) < torch.tensor(pads)[:, None]
    rows = torch.tensor([r for r in (1, 0, 2, 1) if pads[r] <= start])  # new columns: real
    full = x[rows].clone()
    full[:, start:] = torch.randn(len(rows), 7 - start, 16)
    with torch.no_grad():
        last, cache = encoder.causal_cache(x, padding)
        got = encoder.resume(cache, rows, full[:, start:], start, padding)
        want_last = encoder(x, causal=True, padding=padding, last_only=True)[:, -1]
        want = encoder(full, causal=True, padding=padding[rows], last_only=True)[:, -1]
    torch.testing.assert_close(last, want_last, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.all(last[3] == 0)  # an empty row: nothing
    assert not torch.allclose(got, last[rows], atol=1e-3)  # the newer columns differ
