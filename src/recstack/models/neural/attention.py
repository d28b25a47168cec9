"""Multi-head self-attention and the transformer blocks of the sequential models.

Scaled dot-product attention (Vaswani et al., "Attention Is All You Need", NeurIPS 2017)::

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V

with ``d_k = dim / heads`` the size of one head and ``M`` the mask (0 where a query may look
at a key, -inf where it may not), added *before* the softmax so that masked keys get exactly
zero weight. Two masks are used by the sequential recommenders: a causal one (SASRec, Kang &
McAuley, ICDM 2018: position ``i`` sees only positions ``j <= i``) and a padding one (padded
keys are never looked at; BERT4Rec, Sun et al., CIKM 2019, uses it alone).

A query whose every key is masked (a padded position under a causal mask when sequences are
left-padded, or any position of an all-padding sequence) would softmax over nothing and give
NaN. Such a "dead" row is unmasked before the softmax, which keeps values and gradients finite,
and its output is then set to zero, so a query that may see nothing returns nothing. Valid
queries are never dead: they see themselves.

Shapes: ``B`` batch, ``L`` sequence length, ``D`` model width, ``H`` heads; padding masks are
``(B, L)`` bool with ``True`` at padded positions.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recstack.errors import ConfigError

Activation = Literal["gelu", "relu"]
_ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU}


def _check_dropout(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got dropout={dropout!r}")


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive int, got {name}={value!r}")


def _check_input(x: Tensor, padding: Tensor | None, dim: int) -> tuple[int, int, int]:
    """(B, L, D) of ``x`` after checking it and the padding mask against each other."""
    if x.ndim != 3 or x.shape[-1] != dim:
        raise ValueError(f"x must have shape (B, L, {dim}), got {tuple(x.shape)}")
    if padding is not None and (padding.dtype != torch.bool or padding.shape != x.shape[:2]):
        raise ValueError(
            f"padding must be a bool tensor of shape {tuple(x.shape[:2])}, "
            f"got {padding.dtype} of shape {tuple(padding.shape)}"
        )
    batch, length, width = x.shape
    return batch, length, width


def _attention_mask(
    batch: int, length: int, *, causal: bool, padding: Tensor | None, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Which keys each query may attend to, with dead rows unmasked, and which rows are alive.

    Parameters
    ----------
    batch, length : int
        ``B`` and ``L``.
    causal : bool
        Mask keys after the query (``j > i``).
    padding : (B, L) bool tensor or None
        ``True`` at padded positions, which are masked as keys.
    device : torch.device
        Where the masks are built.

    Returns
    -------
    allowed : (B, 1, L, L) bool tensor
        ``True`` where query ``i`` may attend to key ``j`` (broadcast over heads). A row with
        no allowed key is set all ``True`` so that the softmax stays finite.
    alive : (B, L, 1) bool tensor
        ``False`` for those rows: their outputs must be zeroed by the caller.
    """
    allowed = torch.ones(batch, 1, length, length, dtype=torch.bool, device=device)
    if causal:
        allowed = allowed.tril()
    if padding is not None:
        allowed = allowed & ~padding[:, None, None, :]
    alive = allowed.any(dim=-1, keepdim=True)  # (B, 1, L, 1)
    return allowed | ~alive, alive.squeeze(1)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention with causal and padding masks.

    Parameters
    ----------
    dim : int
        Model width ``D``; split evenly over the heads (``d_k = dim // heads``).
    heads : int
        Number of heads ``H``; must divide ``dim``.
    dropout : float, default 0.0
        Dropout on the attention weights, in [0, 1); active in training mode only.
    bias : bool, default True
        Biases in the input and output projections.

    Examples
    --------
    >>> import torch
    >>> attn = MultiHeadSelfAttention(dim=8, heads=2).eval()
    >>> x = torch.randn(3, 5, 8)
    >>> padding = torch.tensor([[True, False, False, False, False]]).expand(3, 5)
    >>> out, weights = attn(x, causal=True, padding=padding, return_weights=True)
    >>> out.shape, weights.shape
    (torch.Size([3, 5, 8]), torch.Size([3, 2, 5, 5]))
    >>> bool(out[:, 0].eq(0).all())  # the padded first position sees nothing
    True
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        _check_positive("dim", dim)
        _check_positive("heads", heads)
        if dim % heads:
            raise ConfigError(f"dim must be divisible by heads, got dim={dim} and heads={heads}")
        _check_dropout(dropout)
        self.dim = dim
        self.heads = heads
        self.head_dim = dim // heads
        self.dropout = dropout
        # one fused projection; its weight rows are [W_q; W_k; W_v] as in nn.MultiheadAttention
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)

    def forward(
        self,
        x: Tensor,
        *,
        causal: bool,
        padding: Tensor | None = None,
        return_weights: bool = False,
        last_only: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Attend over the sequence.

        Parameters
        ----------
        x : (B, L, D) float tensor
            The input sequence.
        causal : bool
            Position ``i`` attends only to positions ``j <= i``.
        padding : (B, L) bool tensor or None
            ``True`` at padded positions; they are never attended to. Outputs at padded
            positions are finite but meaningless (zero where the query sees no key).
        return_weights : bool, default False
            Also return the attention weights. This takes the explicit path (the formula,
            written out); otherwise the fused ``scaled_dot_product_attention`` kernel runs.
        last_only : bool, default False
            Only the last position queries (over every key): ``out`` is (B, 1, D), the last
            row of the full output, at about 1/L of the query-side cost (scoring needs no more).

        Returns
        -------
        out : (B, L, D) tensor
        weights : (B, H, L, L) tensor, only when ``return_weights``
            ``weights[b, h, i, j]``: how much query ``i`` looks at key ``j`` in head ``h``,
            before dropout. Rows sum to 1 over the allowed keys, 0 on masked keys; rows of
            queries that see no key are all 0.
        """
        batch, length, _ = _check_input(x, padding, self.dim)
        if last_only:
            return self._last_query(x, causal=causal, padding=padding)
        q, k, v = self.project(x)
        alive: Tensor | None = None
        weights = None
        if not return_weights and padding is None:
            # no dead rows without padding: every query sees at least itself
            out = self.attend(q, k, v, causal=causal)
        else:
            allowed, alive = _attention_mask(
                batch, length, causal=causal, padding=padding, device=x.device
            )
            if return_weights:
                scores = q @ k.transpose(-2, -1) * (1.0 / math.sqrt(self.head_dim))  # (B, H, L, L)
                scores = scores.masked_fill(~allowed, float("-inf"))
                weights = scores.softmax(dim=-1).masked_fill(~alive[:, None], 0.0)
                p_drop = self.dropout if self.training else 0.0
                out = self.merge(F.dropout(weights, p_drop, training=self.training) @ v)
            else:
                out = self.attend(q, k, v, allowed)
        if alive is not None:
            out = out.masked_fill(~alive, 0.0)
        return (out, weights) if weights is not None else out

    def _last_query(self, x: Tensor, *, causal: bool, padding: Tensor | None) -> Tensor:
        """The last row of :meth:`forward`'s output, (B, 1, D): one query, every key."""
        batch, length, dim = x.shape
        w_q, w_kv = self.qkv.weight.split([dim, 2 * dim])
        b_q, b_kv = (
            self.qkv.bias.split([dim, 2 * dim]) if self.qkv.bias is not None else (None,) * 2
        )
        q = self._split_heads(F.linear(x[:, -1:], w_q, b_q))
        k, v = (self._split_heads(t) for t in F.linear(x, w_kv, b_kv).split(dim, dim=-1))
        allowed, alive = _attention_mask(
            batch, length, causal=causal, padding=padding, device=x.device
        )
        allowed, alive = allowed[:, :, -1:], alive[:, -1:]  # the last query's row
        return self.attend(q, k, v, allowed).masked_fill(~alive, 0.0)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys and values of ``x`` (B, L, D), each (B, H, L, d_k)."""
        q, k, v = (self._split_heads(t) for t in self.qkv(x).split(self.dim, dim=-1))
        return q, k, v

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        allowed: Tensor | None = None,
        *,
        causal: bool = False,
    ) -> Tensor:
        """The output (B, Lq, D) of queries ``q`` (B, H, Lq, d_k) attending to keys and values
        (B, H, Lk, d_k): scaled dot products, a softmax over the keys ``allowed`` ((B, 1, Lq,
        Lk) bool, True where a query may look) or under a ``causal`` mask, dropout on the
        weights in training, the heads merged and projected."""
        ctx = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=allowed,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal,
            scale=1.0 / math.sqrt(self.head_dim),
        )
        return self.merge(ctx)

    def merge(self, ctx: Tensor) -> Tensor:
        """(B, H, L, d_k) per-head outputs -> (B, L, D): heads concatenated, then projected."""
        batch, _, length, _ = ctx.shape
        return self.out(ctx.transpose(1, 2).reshape(batch, length, self.dim))

    def _split_heads(self, t: Tensor) -> Tensor:
        """(B, L, D) -> (B, H, L, d_k): head ``h`` holds features ``h*d_k : (h+1)*d_k``."""
        batch, length, _ = t.shape
        return t.view(batch, length, self.heads, self.head_dim).transpose(1, 2)


class TransformerBlock(nn.Module):
    """Self-attention then a position-wise feed-forward network, each with a residual.

    Pre-LN (default; Xiong et al., ICML 2020: stable without learning-rate warm-up)::

        h = x + Dropout(Attention(LN(x)));  out = h + Dropout(FFN(LN(h)))

    Post-LN (``pre_norm=False``, as in the original Transformer, SASRec and BERT4Rec)::

        h = LN(x + Dropout(Attention(x)));  out = LN(h + Dropout(FFN(h)))

    with ``FFN(h) = W_2 Dropout(act(W_1 h + b_1)) + b_2``. Outputs at padded positions are
    zeroed, so nothing computed there can leak into later layers or the model's head.

    Parameters
    ----------
    dim : int
        Model width ``D``.
    heads : int
        Attention heads; must divide ``dim``.
    dropout : float
        Dropout on attention weights, residual branches and the FFN hidden layer, in [0, 1).
    ffn_dim : int or None, default None
        Hidden width of the feed-forward network; ``4 * dim`` when None.
    activation : {"gelu", "relu"}, default "gelu"
        The FFN non-linearity.
    pre_norm : bool, default True
        Pre-LN when True, post-LN when False.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        dropout: float,
        ffn_dim: int | None = None,
        activation: Activation = "gelu",
        pre_norm: bool = True,
    ) -> None:
        super().__init__()
        self.attention = MultiHeadSelfAttention(dim, heads, dropout)
        ffn_dim = 4 * dim if ffn_dim is None else ffn_dim
        _check_positive("ffn_dim", ffn_dim)
        if activation not in _ACTIVATIONS:
            raise ConfigError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got activation={activation!r}"
            )
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim),
            _ACTIVATIONS[activation](),
            nn.Dropout(dropout),
            nn.Linear(ffn_dim, dim),
        )
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(
        self,
        x: Tensor,
        *,
        causal: bool,
        padding: Tensor | None = None,
        return_weights: bool = False,
        last_only: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Transform the sequence.

        Parameters
        ----------
        x : (B, L, D) float tensor
        causal : bool
            Position ``i`` attends only to positions ``j <= i``.
        padding : (B, L) bool tensor or None
            ``True`` at padded positions.
        return_weights : bool, default False
            Also return the attention weights, (B, H, L, L).
        last_only : bool, default False
            Compute the last position only: ``out`` is (B, 1, D) (no weights).

        Returns
        -------
        out : (B, L, D) tensor, zero at padded positions
        weights : (B, H, L, L) tensor, only when ``return_weights``
        """
        a = self.attention(
            self.attention_input(x),
            causal=causal,
            padding=padding,
            return_weights=return_weights and not last_only,
            last_only=last_only,
        )
        a, weights = a if return_weights and not last_only else (a, None)
        if last_only:
            x = x[:, -1:]
            padding = None if padding is None else padding[:, -1:]
        out = self.residual(x, a)
        if padding is not None:
            out = out.masked_fill(padding[..., None], 0.0)
        return (out, weights) if weights is not None else out

    def resume(self, y: Tensor, k_old: Tensor, v_old: Tensor, key_ok: Tensor) -> Tensor:
        """The block's output for the newer columns ``y`` (B, s, D) of sequences whose older
        columns' keys and values are ``k_old``, ``v_old`` (B, H, L_old, d_k), cached from
        another pass (:meth:`TransformerEncoder.resume`); ``key_ok`` (B, 1, s, L_old + s)
        bool: which keys each newer column may attend to."""
        q, k, v = self.attention.project(self.attention_input(y))
        a = self.attention.attend(
            q, torch.cat([k_old, k], dim=2), torch.cat([v_old, v], dim=2), key_ok
        )
        return self.residual(y, a)

    def attention_input(self, x: Tensor) -> Tensor:
        """What the attention reads from the block's input ``x`` (normalized when pre-LN)."""
        return self.norm1(x) if self.pre_norm else x

    def residual(self, x: Tensor, a: Tensor) -> Tensor:
        """The block's output from its input ``x`` and the attention's output ``a`` at the
        same positions: the residual branches, norms and feed-forward network."""
        h = x + self.drop(a)
        if self.pre_norm:
            return h + self.drop(self.ffn(self.norm2(h)))
        h = self.norm1(h)
        return self.norm2(h + self.drop(self.ffn(h)))


class TransformerEncoder(nn.Module):
    """A stack of :class:`TransformerBlock`, with a final LayerNorm when pre-LN.

    Parameters
    ----------
    dim : int
        Model width ``D``.
    heads : int
        Attention heads; must divide ``dim``.
    layers : int
        Number of blocks, at least 1.
    dropout : float
        Dropout of every block, in [0, 1).
    ffn_dim : int or None, default None
        Hidden width of the feed-forward networks; ``4 * dim`` when None.
    activation : {"gelu", "relu"}, default "gelu"
        The FFN non-linearity.
    pre_norm : bool, default True
        Pre-LN blocks and a final LayerNorm (the residual stream of pre-LN blocks is never
        normalized otherwise); post-LN blocks and no final norm when False.

    Examples
    --------
    >>> import torch
    >>> encoder = TransformerEncoder(dim=16, heads=4, layers=2, dropout=0.1).eval()
    >>> x = torch.randn(2, 6, 16)
    >>> padding = torch.arange(6) < torch.tensor([[2], [0]])  # left padding: 2 and 0 positions
    >>> out, weights = encoder(x, causal=True, padding=padding, return_weights=True)
    >>> out.shape, len(weights), weights[0].shape
    (torch.Size([2, 6, 16]), 2, torch.Size([2, 4, 6, 6]))
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        layers: int,
        dropout: float,
        ffn_dim: int | None = None,
        activation: Activation = "gelu",
        pre_norm: bool = True,
    ) -> None:
        super().__init__()
        _check_positive("layers", layers)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, dropout, ffn_dim, activation, pre_norm)
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim) if pre_norm else nn.Identity()

    def forward(
        self,
        x: Tensor,
        *,
        causal: bool,
        padding: Tensor | None = None,
        return_weights: bool = False,
        last_only: bool = False,
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Run the blocks in order.

        Parameters
        ----------
        x : (B, L, D) float tensor
        causal : bool
            Position ``i`` attends only to positions ``j <= i``.
        padding : (B, L) bool tensor or None
            ``True`` at padded positions.
        return_weights : bool, default False
            Also return each block's attention weights.
        last_only : bool, default False
            Only the last position's output, (B, 1, D): the last block then queries from
            the last position alone (what next-item scoring reads; not with weights).

        Returns
        -------
        out : (B, L, D) tensor, zero at padded positions
        weights : list of (B, H, L, L) tensors, one per block, only when ``return_weights``
        """
        if last_only and return_weights:
            raise ValueError("last_only and return_weights cannot be combined")
        weights: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            if last_only and i == len(self.blocks) - 1:
                x = block(x, causal=causal, padding=padding, last_only=True)
                padding = None if padding is None else padding[:, -1:]
            elif return_weights:
                x, w = block(x, causal=causal, padding=padding, return_weights=True)
                weights.append(w)
            else:
                x = block(x, causal=causal, padding=padding)
        x = self.norm(x)
        if padding is not None:
            x = x.masked_fill(padding[..., None], 0.0)  # the final norm maps 0 to its bias
        return (x, weights) if return_weights else x

    def causal_cache(
        self, x: Tensor, padding: Tensor | None
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """A causal pass over ``x`` (B, L, D) that keeps each block's keys and values, from
        which :meth:`resume` runs variants of its rows that share their older columns.

        Returns
        -------
        last : (B, D) tensor
            The last position's output, as ``forward(x, causal=True, padding=padding,
            last_only=True)[:, -1]``.
        cache : list of (keys, values), each (B, H, L, d_k), one per block
        """
        cache = []
        block: TransformerBlock
        for i, block in enumerate(self.blocks):  # type: ignore[assignment]
            _, k, v = block.attention.project(block.attention_input(x))
            cache.append((k, v))
            x = block(x, causal=True, padding=padding, last_only=i == len(self.blocks) - 1)
        last = self.norm(x[:, -1])
        if padding is not None:  # the final norm maps 0 to its bias
            last = last.masked_fill(padding[:, -1:], 0.0)
        return last, cache

    def resume(
        self,
        cache: list[tuple[Tensor, Tensor]],
        rows: Tensor,
        y: Tensor,
        start: int,
        padding: Tensor | None,
    ) -> Tensor:
        """The last position's causal output (V, D) of variants of rows ``rows`` (V,) of
        :meth:`causal_cache`'s input: their columns before ``start`` are the row's, the
        rest are ``y`` (V, L' - start, D), real items (no padding). With a causal mask the
        older columns' states do not depend on the newer ones, so only ``y`` runs, reading
        the older keys and values from ``cache`` (``padding``: the cached input's, (B, L)).
        """
        s = y.shape[1]
        older = torch.ones(len(rows), 1, s, start, dtype=torch.bool, device=y.device)
        if padding is not None:
            older = older & ~padding[rows, None, None, :start]
        newer = torch.ones(s, s, dtype=torch.bool, device=y.device).tril()
        key_ok = torch.cat([older, newer[None, None].expand(len(rows), 1, -1, -1)], dim=-1)
        block: TransformerBlock
        for block, (k, v) in zip(self.blocks, cache, strict=True):  # type: ignore[assignment]
            y = block.resume(y, k[rows, :, :start], v[rows, :, :start], key_ok)
        return self.norm(y[:, -1])
