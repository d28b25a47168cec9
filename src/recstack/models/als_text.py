"""ALS with item text: implicit ALS for the items with events, and a learned linear map from
text embeddings to item factors for the items without.

The attribute-to-factor mapping of Gantner et al. ("Learning Attribute-to-Feature Mappings
for Cold-Start Recommendations", ICDM 2010), on ALS: after the factorization, a ridge
regression ``W = argmin |T W - Y|^2 + text_reg |W|^2`` maps the unit text vectors ``T`` of
the items with events (and text) to their factors ``Y``. An item without events (listed in
the item features, or added later by :meth:`ALSText.add_items`) gets ``y_i = W^T t_i`` and
is scored like any other item by the folded-in user vector.
"""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from recstack.data import Interactions
from recstack.errors import ConfigError
from recstack.models.als import ALS
from recstack.models.text_items import TextItems, extend_rows


class ALSText(TextItems, ALS):
    """ALS whose items without events get factors mapped from their text (module docstring).

    Parameters
    ----------
    encoder : str
        Text encoder: ``"minilm"`` (all-MiniLM-L6-v2, packaged, offline), ``"tfidf"``,
        ``"tfidf:DIM"``, or any sentence-transformers model name or local path.
    text_columns : str, list of str or None
        Item feature columns that form the text (None: every text-like column).
    text_reg : float > 0
        Ridge weight of the text-to-factor map.
    encode_batch_size : int
        Texts per forward pass of a pretrained encoder.

    The other parameters are :class:`~recstack.models.als.ALS`'s.

    Attributes
    ----------
    text_map_ : (d_text, factors) float32
        ``W``.
    has_events_ : (n_items,) bool
        Items with training events (their factors are ALS's own).
    """

    name = "als-text"
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        **ALS.search_space,
        "text_reg": ("float", 1e-3, 10.0, "log"),
    }

    def __init__(
        self,
        encoder: str = "minilm",
        text_columns: str | list[str] | None = None,
        text_reg: float = 0.1,
        encode_batch_size: int = 64,
        factors: int = 128,
        regularization: float = 20.0,
        alpha: float = 1.0,
        iterations: int = 15,
        solver: str = "cg",
        cg_steps: int = 3,
        seed: int = 0,
    ) -> None:
        super().__init__(factors, regularization, alpha, iterations, solver, cg_steps, seed)
        self.encoder = encoder
        self.text_columns = text_columns
        self.text_reg = text_reg
        self.encode_batch_size = encode_batch_size

    def _validate_params(self) -> None:
        super()._validate_params()
        self._validate_text_params()
        r = self.text_reg
        if not isinstance(r, numbers.Real) or isinstance(r, bool) or not 0 < float(r) < np.inf:
            raise ConfigError(f"text_reg must be a positive number, got {r!r}")

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self._fit_text(train)
        super()._fit(train, valid)
        self.has_events_ = train.item_user_counts > 0
        rows = self.has_events_ & self.has_text_
        t = self.text_vectors_[rows].astype(np.float64)
        y = self.item_factors_[rows].astype(np.float64)
        gram = t.T @ t + float(self.text_reg) * np.eye(t.shape[1])
        self.text_map_ = np.linalg.solve(gram, t.T @ y).astype(np.float32)
        cold = ~self.has_events_
        self.item_factors_[cold] = self.text_vectors_[cold] @ self.text_map_
        self._after_load()  # the fold-in's Gram includes the mapped factors

    def add_items(self, item_features: pd.DataFrame) -> ALSText:
        """Add new items from their text alone, without retraining: ``y = W^T t`` (see
        :meth:`recstack.models.content.ContentKNN.add_items` for ``item_features``).

        Returns
        -------
        ALSText
            self.
        """
        self._check_fitted()
        n_new = self._add_text_items(item_features)
        self.has_events_ = extend_rows(self.has_events_, n_new, False)
        mapped = self.text_vectors_[-n_new:] @ self.text_map_
        self.item_factors_ = np.vstack([self.item_factors_, mapped]).astype(np.float32)
        ALS._after_load(self)
        return self
