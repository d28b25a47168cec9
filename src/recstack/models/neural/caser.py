"""Caser (Tang & Wang 2018): convolutions over the embeddings of the latest items.

Two departures from the paper, both to fit "history in, scores out" and the shared
framework:

- no user embedding: the prediction reads the history only, so a new user or an anonymous
  session is scored without retraining (the paper concatenates a learned user vector);
- training reads whole windows: the convolutions run causally along the sequence, so one
  pass gives every position the features of its own last ``window`` items and every
  position is trained with a full-softmax loss (the paper trains one window per sample
  with a binary loss), and the output item embeddings are tied to the input ones.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recstack.data import Histories
from recstack.errors import ConfigError
from recstack.models.neural.base import SequentialRecommender, _check_int
from recstack.models.neural.sequences import last_items


class CaserNet(nn.Module):
    """Causal horizontal and vertical convolutions -> dropout -> Linear -> ReLU -> (B, L, D).

    Position ``t`` reads the ``window`` embeddings ending at ``t`` (zeros before the
    history's start, as padding embeds to zero): ``horizontal`` filters of each height
    ``1..window`` spanning the embedding, ReLU, max-pooled over the window; ``vertical``
    filters weighting the window's rows (one ``dim``-vector each). A left zero-padding of
    ``window - 1`` rows makes a convolution's output at ``t`` depend on positions ``<= t``
    only.

    ``item_emb`` has ``n_items + 2`` rows (0 = padding, ``n_items + 1`` = mask token, unused);
    rows 1..n_items are also the output embeddings (tied).
    """

    def __init__(
        self, n_items: int, dim: int, window: int, horizontal: int, vertical: int, dropout: float
    ) -> None:
        super().__init__()
        self.window = window
        self.item_emb = nn.Embedding(n_items + 2, dim, padding_idx=0)
        self.horizontal = nn.ModuleList(
            nn.Conv1d(dim, horizontal, height) for height in range(1, window + 1)
        )
        self.vertical = nn.Conv2d(1, vertical, (window, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(window * horizontal + vertical * dim, dim)
        nn.init.normal_(self.item_emb.weight, std=dim**-0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """``items``: (B, L) left-padded (0) item indices shifted by one, latest last."""
        w = self.window
        x = F.pad(self.item_emb(items), (0, 0, w - 1, 0))  # (B, L + w - 1, D)
        cols = x.transpose(1, 2)  # (B, D, L + w - 1)
        pooled = [
            # height h: (B, n_h, L + w - h) -> max over the w - h + 1 starts inside each window
            F.max_pool1d(torch.relu(conv(cols)), w - h + 1, stride=1)  # (B, n_h, L)
            for h, conv in enumerate(self.horizontal, start=1)
        ]
        horizontal = torch.cat(pooled, 1).transpose(1, 2)  # (B, L, w * n_h)
        vertical = self.vertical(x[:, None]).transpose(1, 2).flatten(2)  # (B, L, n_v * D)
        z = self.fc(self.dropout(torch.cat([vertical, horizontal], -1)))  # (B, L, D)
        return torch.relu(z) * (items > 0)[..., None]


class Caser(SequentialRecommender):
    """Convolutional sequence embedding recommendation (Tang & Wang 2018).

    The latest ``window`` items' embeddings form a ``window x dim`` image; ``horizontal``
    filters of every height ``1..window`` (union-level and point-level sequential patterns,
    max-pooled) and ``vertical`` filters (weighted sums of the rows) are concatenated and
    mapped to ``dim``; dotted with the (tied) item embeddings, this scores the next item.
    Only the last ``window`` items matter for a prediction; ``max_len`` is the length of the
    training windows (all their positions are trained at once). See the module docstring for
    the departures from the paper (no user embedding) and
    :class:`~recstack.models.neural.base.SequentialRecommender` for the common parameters.

    Parameters
    ----------
    window : int
        Latest items read by the convolutions (the paper's ``L``); at most ``max_len``.
    horizontal : int
        Horizontal filters per height (the paper's ``n_h``).
    vertical : int
        Vertical filters (the paper's ``n_v``).

    The defaults were checked on the ML-100K split of the shared protocol (validation
    NDCG@10 0.132, test 0.110 from train + valid histories; without ``exclude_seen`` 0.117
    and 0.104).

    Examples
    --------
    >>> from recstack.models import Caser
    >>> Caser(window=3).get_params()["window"]
    3
    """

    name = "caser"
    window: int
    horizontal: int
    vertical: int
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        **SequentialRecommender.search_space,
        "window": ("int", 2, 10),
        "horizontal": ("categorical", [4, 8, 16, 32]),
        "vertical": ("categorical", [1, 2, 4, 8]),
    }

    def __init__(
        self,
        dim: int = 64,
        window: int = 5,
        horizontal: int = 16,
        vertical: int = 4,
        max_len: int = 50,
        dropout: float = 0.4,
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
        for key in ("window", "horizontal", "vertical"):
            _check_int(key, getattr(self, key), 1)
        if self.window > self.max_len:
            raise ConfigError(
                f"window ({self.window}) must be at most max_len ({self.max_len}): training "
                "positions would never see a full window"
            )

    def _build_net(self, n_items: int) -> nn.Module:
        return CaserNet(
            n_items, self.dim, self.window, self.horizontal, self.vertical, self.dropout
        )

    def _score_inputs(self, histories: Histories) -> np.ndarray:
        """Only the last ``window`` items reach the latest position's output."""
        return last_items(histories, self.window)
