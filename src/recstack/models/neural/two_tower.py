"""Two-tower retrieval (Covington et al. 2016; Yi et al. 2019): a user tower reads the
history, an item tower reads the item, and the score is their dot product.

The user tower pools the embeddings of the history items -- a plain mean, or a
recency-weighted one -- and passes the pool through an MLP; the item tower passes the item's
ID embedding (shared with the user tower's input) through its own MLP. Scores are plain
inner products, so the two towers' outputs go straight into an inner-product index (faiss)
for retrieval over large catalogs. Pooling is causal, so the user vector at every position
of a training window is available at once and the model trains on the framework's
next-item windows: full softmax cross-entropy, or sampled softmax with logQ correction for
large catalogs (Yi et al. 2019).

An MLP scorer over concatenated user and item vectors (NeuMF's "MLP" path) is deliberately
not offered: it is not an inner product (no ANN retrieval, and every (user, item) pair of
the softmax would need an MLP pass), and a tuned dot product beats it (Rendle et al. 2020,
"Neural Collaborative Filtering vs. Matrix Factorization Revisited").
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from recstack.models.neural.base import SequentialRecommender, _check_float, _check_int


class Tower(nn.Module):
    """A residual MLP ``x + f(x)``: ``layers`` hidden layers of width ``hidden`` (GELU,
    dropout) and a linear map back to ``dim``. ``layers = 0`` is the identity.

    The last linear map starts at zero, so an untrained tower passes the embeddings through
    unchanged and training starts from the plain embedding dot product.
    """

    def __init__(self, dim: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
            width = hidden
        if layers:
            out = nn.Linear(width, dim)
            nn.init.zeros_(out.weight)
            nn.init.zeros_(out.bias)
            blocks.append(out)
        self.mlp = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., D) -> (..., D)
        return x + self.mlp(x) if len(self.mlp) else x


class TwoTowerNet(nn.Module):
    """Item ID embeddings, a user tower over causal pooled histories, an item tower.

    ``item_emb`` has ``n_items + 2`` rows (0 = padding, ``n_items + 1`` unused: the
    framework's mask-token row). ``half_life`` (events) weighs the item ``k`` events before
    position ``t`` by ``0.5 ** (k / half_life)`` in the user pool; ``None`` weighs all equally.
    """

    def __init__(
        self,
        n_items: int,
        dim: int,
        hidden: int,
        layers: int,
        dropout: float,
        half_life: float | None,
    ) -> None:
        super().__init__()
        self.n_items = n_items
        self.half_life = half_life
        self.item_emb = nn.Embedding(n_items + 2, dim, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=dim**-0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.dropout = nn.Dropout(dropout)
        self.user_tower = Tower(dim, hidden, layers, dropout)
        self.item_tower = Tower(dim, hidden, layers, dropout)

    def pool(self, items: torch.Tensor) -> torch.Tensor:
        """Causal (weighted) means of the embeddings of ``items`` (B, L) (0 = padding):
        (B, L, D); row ``t`` pools the items at positions ``<= t``, all zeros where there
        are none. Exact and stable for any half-life: a (L, L) lower-triangular weight
        matrix, rather than cumulative sums of ``2 ** (s / half_life)``, which overflow."""
        length = items.shape[1]
        emb = self.dropout(self.item_emb(items))  # (B, L, D); padding rows are zero
        pos = torch.arange(length, device=items.device, dtype=emb.dtype)
        lag = pos[:, None] - pos[None, :]  # (L, L): t - s
        decay = 0.0 if self.half_life is None else 1.0 / self.half_life
        weight = torch.where(lag >= 0, torch.exp2(-lag.clamp(min=0) * decay), 0.0)  # (L, L)
        present = (items > 0).to(emb.dtype)  # (B, L)
        total = torch.matmul(weight, emb)  # (B, L, D)
        mass = present @ weight.T  # (B, L): weight of the items pooled at each t
        return total / mass.clamp(min=1e-12)[..., None]

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """User vectors (B, L, D) at every position of ``items`` (B, L)."""
        return self.user_tower(self.pool(items))

    def item_vectors(self) -> torch.Tensor:
        """Item tower outputs of the catalog, (n_items, D)."""
        return self.item_tower(self.dropout(self.item_emb.weight[1 : self.n_items + 1]))


class TwoTower(SequentialRecommender):
    """Two-tower retrieval model: MLP towers over a pooled history and over item IDs.

    The user vector is ``user_tower(pool(history))`` where ``pool`` is the mean of the ID
    embeddings of the last ``max_len`` history items, recency-weighted by ``half_life``;
    the item vector is ``item_tower(embedding(item))``; the score is their dot product.
    Each tower is a residual MLP with ``layers`` hidden layers of width ``hidden``. Trained
    with the shared loop to predict every next item of the training histories (the user
    vector at each position is computed from that position's prefix only). See
    :class:`~recstack.models.neural.base.SequentialRecommender` for the common parameters.

    Parameters
    ----------
    hidden : int
        Width of the towers' hidden layers.
    layers : int
        Hidden layers per tower (0: no MLP, the model is a pooled-embedding dot product).
    half_life : float or None
        Recency weighting of the user pool, in events: the item ``k`` events before the
        latest weighs ``0.5 ** (k / half_life)``. ``None``: a plain (order-blind) mean.

    The defaults were chosen on the ML-100K validation split of the shared protocol.

    References
    ----------
    Covington, Adams & Sargin (2016), "Deep Neural Networks for YouTube Recommendations".
    Yi et al. (2019), "Sampling-Bias-Corrected Neural Modeling for Large Corpus Item
    Recommendations".

    Examples
    --------
    >>> from recstack.models.neural.two_tower import TwoTower
    >>> model = TwoTower(dim=32, hidden=64, layers=1, epochs=5, device="cpu", verbose=False)
    >>> model.get_params()["half_life"]
    10.0
    """

    name = "two-tower"
    hidden: int
    layers: int
    half_life: float | None
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        **SequentialRecommender.search_space,
        "hidden": ("categorical", [64, 128, 256]),
        "layers": ("int", 0, 2),
        "half_life": ("categorical", [None, 2.0, 5.0, 10.0, 20.0, 50.0]),
    }

    def __init__(
        self,
        dim: int = 64,
        hidden: int = 128,
        layers: int = 1,
        half_life: float | None = 10.0,
        max_len: int = 200,
        dropout: float = 0.2,
        epochs: int = 200,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 100,
        clip_norm: float = 1.0,
        patience: int = 10,
        loss: str = "ce",
        negatives: int = 256,
        shuffle_ties: bool = False,
        tie_orders: int = 1,
        device: str = "auto",
        seed: int = 0,
        verbose: bool = True,
    ) -> None:
        self._common_init(locals())

    def _validate_params(self) -> None:
        super()._validate_params()
        _check_int("hidden", self.hidden, 1)
        _check_int("layers", self.layers, 0)
        if self.half_life is not None:  # None: a plain mean
            _check_float("half_life", self.half_life, 0.0, math.inf, lo_open=True, hi_open=True)

    def _build_net(self, n_items: int) -> nn.Module:
        half_life = None if self.half_life is None else float(self.half_life)
        return TwoTowerNet(n_items, self.dim, self.hidden, self.layers, self.dropout, half_life)

    def _output_items(self, net: nn.Module) -> torch.Tensor:
        """The item tower's outputs (n_items, D): the softmax weights and ``item_vectors``."""
        return net.item_vectors()  # type: ignore[operator]
