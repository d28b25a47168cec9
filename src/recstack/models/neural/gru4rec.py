"""GRU4Rec (Hidasi et al. 2016): a recurrent network reads the history and predicts the next item.

Trained as in Klenitskiy & Vasilev 2023 ("SASRec+"/GRU4Rec with cross-entropy): on whole
windows of the history with a full-softmax loss at every position, rather than the paper's
session-parallel mini-batches with a ranking loss (BPR-max / TOP1).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from recstack.errors import ConfigError
from recstack.models.neural.base import SequentialRecommender, _check_int

CELLS = ("gru", "lstm")


class GRU4RecNet(nn.Module):
    """Item embeddings -> dropout -> stacked GRU/LSTM -> (Linear to ``dim``) -> (B, L, D).

    Inputs are left-padded, but a recurrent state would carry the padding's trace (biases
    move the state even for zero inputs). Each row is therefore rotated so that its real
    items come first, run through the RNN, and rotated back: the trailing padding is read
    after every real position, so it cannot change any of their states, and a history's
    output does not depend on how much padding precedes it. Padded positions output zeros
    (an empty history scores every item 0).

    ``item_emb`` has ``n_items + 2`` rows (0 = padding, ``n_items + 1`` = mask token, unused);
    rows 1..n_items are also the output embeddings (tied).
    """

    def __init__(
        self, n_items: int, dim: int, hidden_dim: int, layers: int, cell: str, dropout: float
    ) -> None:
        super().__init__()
        self.item_emb = nn.Embedding(n_items + 2, dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        between = dropout if layers > 1 else 0.0  # torch warns about dropout on one layer
        self.rnn = rnn(dim, hidden_dim, num_layers=layers, batch_first=True, dropout=between)
        self.proj = nn.Linear(hidden_dim, dim) if hidden_dim != dim else nn.Identity()
        nn.init.normal_(self.item_emb.weight, std=dim**-0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def forward(self, items: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """``items``: (B, L) left-padded (0) item indices shifted by one, latest last.

        Returns the states (B, L, D), latest last; or with ``last_only`` the latest one
        alone, (B, D): the RNN then reads packed sequences, so no step is spent on padding.
        """
        length = items.shape[1]
        n_real = (items > 0).sum(1)  # (B,)
        pos = torch.arange(length, device=items.device)[None]  # (1, L)
        n_pad = (length - n_real)[:, None]  # (B, 1)
        front = items.gather(1, (pos + n_pad) % length)  # (B, L) real items first
        x = self.dropout(self.item_emb(front))  # (B, L, D)
        if last_only:
            # an explicit initial state keeps the batch size a tensor (traceable)
            h0 = x.new_zeros(self.rnn.num_layers, x.shape[0], self.rnn.hidden_size)
            packed = pack_padded_sequence(
                x, n_real.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
            )
            _, state = self.rnn(packed, (h0, h0) if isinstance(self.rnn, nn.LSTM) else h0)
            last = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c)
            return self.proj(last[-1]) * (n_real > 0)[:, None]  # (B, D); empty rows 0
        out = self.proj(self.rnn(x)[0])  # (B, L, D)
        back = ((pos - n_pad) % length)[..., None].expand(-1, -1, out.shape[-1])
        return out.gather(1, back) * (items > 0)[..., None]  # (B, L, D), latest last again


class GRU4Rec(SequentialRecommender):
    """Session-based recommendation with recurrent networks (Hidasi et al. 2016).

    The last ``max_len`` history items go through ``layers`` stacked GRU (or LSTM, ``cell``)
    layers of ``hidden_dim`` units; the output at the latest position,
    projected to ``dim`` when ``hidden_dim`` differs, dotted with the (tied) item embeddings,
    scores the next item. See
    :class:`~recstack.models.neural.base.SequentialRecommender` for the common parameters.

    Parameters
    ----------
    cell : {"gru", "lstm"}
        The recurrent unit.
    layers : int
        Stacked recurrent layers (``dropout`` also applies between them).
    hidden_dim : int or None
        Recurrent state size; ``None`` means ``dim``.

    The defaults were chosen among a few settings on the ML-100K validation split of the
    shared protocol (``benchmarks/bench_sequential.py --models gru4rec``): validation
    NDCG@10 0.131, test 0.118 (from train + valid histories); without ``exclude_seen``
    0.124 and 0.105; ``max_len=200, hidden_dim=64, dropout=0.2`` gave 0.103 and 0.078.
    Scoring reads packed sequences: no recurrent step is spent on padding.

    Examples
    --------
    >>> from recstack.models import GRU4Rec
    >>> GRU4Rec(cell="lstm", layers=2).get_params()["cell"]
    'lstm'
    """

    name = "gru4rec"
    cell: str
    layers: int
    hidden_dim: int | None
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        **SequentialRecommender.search_space,
        "layers": ("int", 1, 3),
        "cell": ("categorical", list(CELLS)),
    }

    def __init__(
        self,
        dim: int = 64,
        cell: str = "gru",
        layers: int = 1,
        hidden_dim: int | None = 128,
        max_len: int = 50,
        dropout: float = 0.3,
        epochs: int = 200,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 100,
        clip_norm: float = 1.0,
        patience: int = 10,
        loss: str = "ce",
        negatives: int = 256,
        exclude_seen: bool = True,
        shuffle_ties: bool = False,
        tie_orders: int = 1,
        device: str = "auto",
        seed: int = 0,
        verbose: bool = True,
    ) -> None:
        self._common_init(locals())

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.cell not in CELLS:
            raise ConfigError(f"cell must be one of {CELLS}, got {self.cell!r}")
        _check_int("layers", self.layers, 1)
        if self.hidden_dim is not None:
            _check_int("hidden_dim", self.hidden_dim, 1)

    def _last_hidden(self, net: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        return net(inputs, last_only=True)

    def _build_net(self, n_items: int) -> nn.Module:
        hidden = self.dim if self.hidden_dim is None else self.hidden_dim
        return GRU4RecNet(n_items, self.dim, hidden, self.layers, self.cell, self.dropout)
