"""What the Transformer sequence models (SASRec, BERT4Rec) share: the network's input side
(item + learned position embeddings into a :class:`TransformerEncoder`) and, on the model,
the ``layers``/``heads`` parameters and the attention-weights view."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from recstack.data import Histories
from recstack.errors import ConfigError
from recstack.models.neural.attention import TransformerEncoder
from recstack.models.neural.base import SequentialRecommender, _check_int
from recstack.models.neural.sequences import N_GAP_BUCKETS


class TransformerSequenceNet(nn.Module):
    """Item + learned position embeddings -> Transformer encoder -> (B, L, D).

    ``item_emb`` has ``n_items + 2`` rows (0 = padding, ``n_items + 1`` = mask token); its
    rows 1..n_items are also the output embeddings (tied). Positions count from the right
    end, where the latest item sits. ``causal`` masks later positions (SASRec) or not
    (BERT4Rec); ``pos_std`` is the position embeddings' initial scale. With ``time_gaps``
    the inputs are :func:`~recstack.models.neural.sequences.gap_tokens` and each one adds
    the embedding of its time gap (``gap_emb``) to its item's.
    """

    def __init__(
        self,
        n_items: int,
        dim: int,
        max_len: int,
        heads: int,
        layers: int,
        dropout: float,
        *,
        causal: bool,
        pos_std: float,
        time_gaps: bool = False,
    ) -> None:
        super().__init__()
        self.causal = causal
        self.item_emb = nn.Embedding(n_items + 2, dim, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, dim)
        # tokens are item + token_base * gap bucket (0: the inputs are items)
        self.token_base = n_items + 2 if time_gaps else 0
        if time_gaps:
            self.gap_emb = nn.Embedding(N_GAP_BUCKETS, dim)
            nn.init.normal_(self.gap_emb.weight, std=pos_std)
        self.dropout = nn.Dropout(dropout)
        self.encoder = TransformerEncoder(dim, heads, layers, dropout)
        nn.init.normal_(self.item_emb.weight, std=dim**-0.5)
        nn.init.normal_(self.pos_emb.weight, std=pos_std)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.scale = dim**0.5

    def embed(self, items: torch.Tensor) -> torch.Tensor:
        """Input representation (..., D) of shifted item indices (...)."""
        return self.item_emb(items)

    def inputs(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's input (B, L, D) (zero at padding) and the (B, L) padding mask of
        padded item indices (B, L); the columns are the last ``L`` of a ``max_len`` window
        (positions count from the right end)."""
        length = items.shape[1]
        pos = torch.arange(length, device=items.device) + (self.pos_emb.num_embeddings - length)
        gaps = None
        if self.token_base:
            items, gaps = items % self.token_base, items // self.token_base
        x = self.embed(items) * self.scale + self.pos_emb(pos)[None]
        if gaps is not None:
            x = x + self.gap_emb(gaps)
        padding = items == 0
        return self.dropout(x) * (~padding)[..., None], padding

    def forward(
        self, items: torch.Tensor, return_weights: bool = False, last_only: bool = False
    ) -> Any:
        """``items``: (B, L) padded (0) item indices shifted by one, latest last.

        Returns (B, L, D) hidden states (and each layer's (B, H, L, L) attention weights
        when ``return_weights``).
        """
        x, padding = self.inputs(items)
        return self.encoder(
            x,
            causal=self.causal,
            padding=padding,
            return_weights=return_weights,
            last_only=last_only,
        )


class TransformerRecommender(SequentialRecommender):
    """A :class:`SequentialRecommender` on a :class:`TransformerSequenceNet`: adds
    ``layers`` and ``heads`` and :meth:`attention`."""

    layers: int
    heads: int
    trims_padding = True
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        **SequentialRecommender.search_space,
        "layers": ("int", 1, 3),
        "heads": ("categorical", [1, 2, 4]),
    }

    def _validate_params(self) -> None:
        super()._validate_params()
        _check_int("layers", self.layers, 1)
        _check_int("heads", self.heads, 1)
        if self.dim % self.heads:
            raise ConfigError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")

    def _last_hidden(self, net: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        # the last block queries from the scored position alone (exact; half the cost)
        return net(inputs, last_only=True)[:, -1]

    @torch.no_grad()
    def _variant_states(
        self, base: np.ndarray, variants: np.ndarray, rows: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        net: TransformerSequenceNet = self._net  # type: ignore[assignment]
        if not net.causal:  # a later change moves every state
            return super()._variant_states(base, variants, rows)
        # a causal net's states before a variant's first reordered column are the log
        # order's: each variant runs its reordered tail alone, reading the older columns'
        # keys and values from its row's pass (TransformerEncoder.resume)
        if net.training:
            net.eval()
        touched, source = np.unique(rows, return_inverse=True)
        inputs = self._to_device(base[touched])
        device, width = inputs.device, inputs.shape[1]
        tails = variants[:, -width:]
        first = np.argmax(tails != base[rows][:, -width:], axis=1)
        logged = torch.empty((len(base), net.item_emb.embedding_dim), device=device)
        reordered = torch.empty((len(variants), logged.shape[1]), device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            x, padding = net.inputs(inputs)
            own, cache = net.encoder.causal_cache(x, padding)
            logged[torch.from_numpy(touched).to(device)] = own.float()
            for start in np.unique(first):  # the variants whose tails start there
                sel = np.flatnonzero(first == start)
                y, _ = net.inputs(torch.from_numpy(tails[sel, start:]).to(device))
                src = torch.from_numpy(source[sel]).to(device)
                state = net.encoder.resume(cache, src, y, int(start), padding)
                reordered[torch.from_numpy(sel).to(device)] = state.float()
        rest = np.setdiff1d(np.arange(len(base)), touched)
        if len(rest):
            logged[torch.from_numpy(rest).to(device)] = self._states(self._to_device(base[rest]))
        return logged, reordered

    def attention(self, histories: Histories) -> list[np.ndarray]:
        """Attention weights of each layer when scoring the histories, a list of
        (n, heads, max_len, max_len) arrays (query row, key column; padded positions first,
        the scored position last). A cheap view of which history items the model reads."""
        self._check_fitted()
        device = next(self._net.parameters()).device
        inputs = torch.from_numpy(self._score_inputs(histories)).to(device)
        with torch.no_grad():
            _, weights = self._net(inputs, return_weights=True)
        return [w.float().cpu().numpy() for w in weights]
