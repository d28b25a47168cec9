"""SASRec (Kang & McAuley 2018): causal self-attention over the history predicts the next item.

Trained as in "SASRec+" (Klenitskiy & Vasilev 2023): on whole windows of the history with a
loss at every position and a full softmax over the catalog, which is both far faster and
far better than RecBole's one-prefix-per-sample training with a binary loss.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from recstack.data import Histories
from recstack.errors import ConfigError
from recstack.models.neural.attention import TransformerEncoder
from recstack.models.neural.base import SequentialRecommender, _check_int


class SASRecNet(nn.Module):
    """Item + learned position embeddings -> causal Transformer encoder -> (B, L, D).

    ``item_emb`` has ``n_items + 2`` rows (0 = padding, ``n_items + 1`` = mask token,
    unused by SASRec); its rows 1..n_items are also the output embeddings (tied).
    """

    def __init__(
        self, n_items: int, dim: int, max_len: int, heads: int, layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.item_emb = nn.Embedding(n_items + 2, dim, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, dim)
        self.dropout = nn.Dropout(dropout)
        self.encoder = TransformerEncoder(dim, heads, layers, dropout)
        nn.init.normal_(self.item_emb.weight, std=dim**-0.5)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.scale = dim**0.5

    def forward(
        self, items: torch.Tensor, causal: bool = True, return_weights: bool = False
    ) -> Any:
        """``items``: (B, L) padded (0) item indices shifted by one, latest last."""
        length = items.shape[1]
        pos = torch.arange(length, device=items.device) + (self.pos_emb.num_embeddings - length)
        x = self.item_emb(items) * self.scale + self.pos_emb(pos)[None]
        padding = items == 0
        x = self.dropout(x) * (~padding)[..., None]
        return self.encoder(x, causal=causal, padding=padding, return_weights=return_weights)


class SASRec(SequentialRecommender):
    """Self-attentive sequential recommendation (Kang & McAuley 2018).

    ``heads`` attention heads in each of ``layers`` pre-LN Transformer blocks over the last
    ``max_len`` history items with a causal mask; the hidden state at the latest position,
    dotted with the (tied) item embeddings, scores the next item. See
    :class:`~recstack.models.neural.base.SequentialRecommender` for the common parameters.

    The defaults are the best of the few settings tried on the ML-100K validation split of
    the shared protocol (``benchmarks/bench_sequential.py``; not a full search yet).
    """

    name = "sasrec"
    layers: int
    heads: int
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        **SequentialRecommender.search_space,
        "layers": ("int", 1, 3),
        "heads": ("categorical", [1, 2, 4]),
    }

    def __init__(
        self,
        dim: int = 64,
        layers: int = 2,
        heads: int = 2,
        max_len: int = 50,
        dropout: float = 0.2,
        epochs: int = 200,
        batch_size: int = 64,
        learning_rate: float = 3e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 20,
        clip_norm: float = 1.0,
        patience: int = 10,
        loss: str = "ce",
        negatives: int = 256,
        device: str = "auto",
        seed: int = 0,
        verbose: bool = True,
    ) -> None:
        self._common_init(locals())

    def _validate_params(self) -> None:
        super()._validate_params()
        _check_int("layers", self.layers, 1)
        _check_int("heads", self.heads, 1)
        if self.dim % self.heads:
            raise ConfigError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")

    def _build_net(self, n_items: int) -> nn.Module:
        return SASRecNet(n_items, self.dim, self.max_len, self.heads, self.layers, self.dropout)

    def attention(self, histories: Histories) -> list[np.ndarray]:
        """Attention weights of each layer for the histories' last ``max_len`` items, a
        list of (n, heads, max_len, max_len) arrays (query row, key column; padded
        positions first). A cheap view of which history items the model reads."""
        self._check_fitted()
        device = next(self._net.parameters()).device
        inputs = torch.from_numpy(self._score_inputs(histories)).to(device)
        with torch.no_grad():
            _, weights = self._net(inputs, return_weights=True)
        return [w.float().cpu().numpy() for w in weights]
