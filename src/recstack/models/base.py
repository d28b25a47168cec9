"""The model contract: history in, scores out.

Every model scores users from their interaction history (:class:`Histories`), so a known
user, a brand-new user and an anonymous session are served by the same call. Subclasses
implement ``_fit`` and ``_score``; the base class owns validation, recommendation (top-K
with exclusions), item similarity, parameters (by introspection of ``__init__``) and
saving/loading without pickle.
"""

from __future__ import annotations

import difflib
import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recstack.data import Histories, IdMap, Interactions, UnknownPolicy
from recstack.data.idmap import as_id_array
from recstack.errors import ConfigError, DataError, ModelFitError, NotFittedError, RecstackError
from recstack.ranking import topk

FORMAT_VERSION = 1
#: rows scored at once: bounds memory to ~SCORE_BUDGET float32 scores per batch
SCORE_BUDGET = 1 << 25


def batch_rows(n_items: int, budget: int = SCORE_BUDGET) -> int:
    """How many users to score at once so a batch holds about ``budget`` scores."""
    return max(1, min(8192, budget // max(1, n_items)))


@dataclass(frozen=True)
class Recommendations:
    """Top-K lists for a batch of users (or query items, for :meth:`similar_items`).

    Attributes
    ----------
    queries : (n,) object
        External user IDs (``None`` for a history without a user), or query item IDs.
    index : (n, k) int32
        Internal item indices, best first; ``-1`` pads lists shorter than ``k``.
    scores : (n, k) float32
        Model scores (``-inf`` on padding).
    items : IdMap
        The item map the indices refer to.
    known : (n,) bool
        The query had a stored history (known user) or the item is in the catalog.
    """

    queries: np.ndarray
    index: np.ndarray
    scores: np.ndarray
    items: IdMap
    known: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    @property
    def item_ids(self) -> np.ndarray:
        """External item IDs, shape (n, k) object (``None`` on padding)."""
        return self.items.to_ids(self.index)

    def to_frame(self) -> pd.DataFrame:
        """Long table ``user, item, rank, score`` (rank from 1; padding left out)."""
        n, k = self.index.shape
        valid = (self.index >= 0).ravel()
        return pd.DataFrame(
            {
                "user": np.repeat(self.queries, k)[valid],
                "item": self.item_ids.ravel()[valid],
                "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), n)[valid],
                "score": self.scores.ravel()[valid],
            }
        )


class Recommender:
    """Base class of every model (see the module docstring for the contract).

    Hyper-parameters are the constructor's keyword arguments, stored unchanged as
    attributes of the same name and validated in :meth:`fit` (scikit-learn style).
    Learned state lives in attributes ending with ``_``, set only by ``fit``/``load``.
    """

    #: registry name (``"popularity"``); set by each concrete model
    name: ClassVar[str] = ""
    #: what ``recstack tune`` searches: ``{param: ("int"|"float", low, high[, "log"])}`` or
    #: ``{param: ("categorical", [choices])}`` (see :mod:`recstack.evaluation.tune`)
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {}

    # ------------------------------------------------------------------ parameters
    @classmethod
    def param_names(cls) -> list[str]:
        """Names of the constructor's parameters, in signature order."""
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        sig = inspect.signature(cls.__init__)
        return {n: sig.parameters[n].default for n in cls.param_names()}

    def get_params(self) -> dict[str, Any]:
        """The hyper-parameters, read from the attributes named like the constructor's args."""
        return {name: getattr(self, name) for name in self.param_names()}

    @classmethod
    def check_param_names(cls, names: Sequence[str]) -> None:
        """Raise :class:`ConfigError` for a name that is not a parameter (with a suggestion)."""
        known = cls.param_names()
        for name in names:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    f"{cls.__name__} has no parameter {name!r}{hint} "
                    f"(parameters: {', '.join(known) or 'none'})"
                )

    def set_params(self, **params: Any) -> Self:
        self.check_param_names(list(params))
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _validate_params(self) -> None:
        """Check hyper-parameters; subclasses raise :class:`ConfigError` naming the bad one."""

    # ------------------------------------------------------------------ fitting
    def fit(self, train: Interactions, valid: Interactions | None = None) -> Self:
        """Learn from ``train`` (``valid``, same ID space, for early stopping). Returns self."""
        self._validate_params()
        if not isinstance(train, Interactions):
            raise DataError(f"fit expects Interactions, got {type(train).__name__}")
        if train.n_events == 0:
            raise DataError("fit: the training data has no events")
        if valid is not None and valid.items != train.items:
            raise DataError("fit: valid and train use different item ID maps")
        self._clear_state()  # a refit starts fresh: no learned attribute of a former fit
        try:
            self.users_ = train.users
            self.items_ = train.items
            self.history_ = train.histories()
            # the catalog's metadata travels with the model (titles for display, text for
            # content models and explanations)
            self.item_features_ = train.item_features
            self._fit(train, valid)
            self._check_finite()
        except BaseException:
            self._clear_state()  # never leave a half-fitted model that looks fitted
            raise
        return self

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        raise NotImplementedError

    def _learned_keys(self) -> list[str]:
        """Names of learned attributes: public, ending with ``_`` (``_private`` names are
        derived state, rebuilt by :meth:`_after_load`)."""
        return [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]

    def _clear_state(self) -> None:
        for key in self._learned_keys():
            delattr(self, key)

    def _check_finite(self) -> None:
        for key, arr in self._learned_arrays().items():
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise ModelFitError(
                    f"{type(self).__name__}: training produced non-finite values in {key!r}; "
                    "lower the learning rate or raise the regularization"
                )

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "items_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load()")

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return len(self.items_)

    # ------------------------------------------------------------------ scoring
    def score(self, histories: Histories) -> np.ndarray:
        """Scores of every catalog item for each history, shape (n, n_items) float32.

        Higher is better; ``-inf`` marks items the model will never recommend.
        """
        self._check_fitted()
        if histories.n_items != self.n_items:
            raise DataError(
                f"histories refer to {histories.n_items} items, the model knows {self.n_items}"
            )
        out = np.asarray(self._score(histories), dtype=np.float32)
        if out.shape != (len(histories), self.n_items):
            raise RecstackError(
                f"{type(self).__name__}._score returned shape {out.shape}, "
                f"expected {(len(histories), self.n_items)}"
            )
        # callers (top-K) overwrite scores in place: never hand out learned state itself
        if not out.flags.writeable or any(
            np.may_share_memory(out, a) for a in self._learned_arrays().values()
        ):
            out = out.copy()
        return out

    def _score(self, histories: Histories) -> np.ndarray:
        raise NotImplementedError

    def user_histories(
        self, users: Sequence[object] | np.ndarray, unknown: UnknownPolicy = "raise"
    ) -> Histories:
        """Stored training histories of external ``users``; an unknown user (with
        ``unknown="warn"``/``"ignore"``) gets an empty history and ``users == -1``."""
        self._check_fitted()
        idx = self.users_.index(users, unknown=unknown)
        sel = self.history_.select(np.maximum(idx, 0))
        known = idx >= 0
        if not known.all():  # unknown users: empty rows
            keep = np.repeat(known, sel.lengths)
            indptr = np.zeros(len(idx) + 1, dtype=np.int64)
            np.cumsum(np.where(known, sel.lengths, 0), out=indptr[1:])
            sel = Histories(indptr, sel.items[keep], sel.values[keep], sel.times[keep], sel.n_items)
        return Histories(sel.indptr, sel.items, sel.values, sel.times, sel.n_items, idx)

    def recommend(
        self,
        users: Sequence[object] | np.ndarray | None = None,
        *,
        histories: Histories | Sequence[Sequence[object]] | None = None,
        k: int = 10,
        exclude_seen: bool = True,
        items: Sequence[object] | np.ndarray | None = None,
        unknown: UnknownPolicy = "raise",
        times: Sequence[Sequence[float]] | None = None,
    ) -> Recommendations:
        """Top-``k`` items for known ``users`` (external IDs, scored from their stored
        history) or for ``histories`` (a :class:`Histories`, or lists of external item IDs
        of new users, with their event ``times`` in unix seconds when known: one list per
        history; by default the events are one second apart. Models that read the times,
        such as SASRec's ``time_gaps``, score a known user's items given with its times as
        that user).

        ``exclude_seen`` removes history items; ``items`` restricts the candidates to these
        external item IDs. ``unknown`` is the policy for unknown user/item IDs; with
        ``"warn"``/``"ignore"`` an unknown user is scored from an empty history. An empty
        history (a user with no events at all) gets the most popular items: those with the
        most distinct users in the training histories.
        """
        self._check_fitted()
        if not isinstance(k, int | np.integer) or isinstance(k, bool) or k <= 0:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        if (users is None) == (histories is None):
            raise ConfigError("recommend: give exactly one of users= or histories=")
        if isinstance(users, Histories):  # not a list of IDs: its repr is the whole log
            raise ConfigError("recommend: users= takes user IDs; pass a Histories as histories=")
        if times is not None and (histories is None or isinstance(histories, Histories)):
            raise ConfigError("recommend: times= goes with histories= given as lists of IDs")
        if users is not None:
            hist = self.user_histories(users, unknown=unknown)
            queries = as_id_array(users)
            known = np.asarray(hist.users) >= 0
        else:
            hist = (
                histories
                if isinstance(histories, Histories)
                else Histories.from_ids(self.items_, histories, unknown, times)  # type: ignore[arg-type]
            )
            hu = hist.users if hist.users is not None else np.full(len(hist), -1, np.int32)
            queries = self.users_.to_ids(hu)
            known = hu >= 0
        allowed = None
        if items is not None:
            allowed = np.zeros(self.n_items, dtype=bool)
            cand = self.items_.index(items, unknown=unknown)
            allowed[cand[cand >= 0]] = True
        index, scores = self._rank(hist, k, exclude_seen, allowed)
        return Recommendations(queries, index, scores, self.items_, known)

    def _rank(
        self, hist: Histories, k: int, exclude_seen: bool, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Score ``hist`` in memory-bounded batches and keep the top ``k`` of each row; an
        empty history gets the popular items (:meth:`item_popularity`)."""
        step = batch_rows(self.n_items)
        parts = []
        for start in range(0, len(hist), step):
            h = hist.select(slice(start, start + step))
            exclude = h.to_csr() if exclude_seen else None
            scores = self.score(h)
            empty = h.lengths == 0
            if empty.any():  # nothing to personalize from: the popular items
                scores[empty] = self.item_popularity()
            parts.append(topk(scores, k, exclude=exclude, allowed=allowed))
        if not parts:
            return np.zeros((0, k), np.int32), np.zeros((0, k), np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def optimize_inference(self) -> bool:
        """Prepare for many scoring calls (a service does this once after loading).

        Models with a faster inference form switch to it here (the neural sequence models
        trace their network with TorchScript); scores do not change. Returns whether
        anything changed; the default does nothing."""
        self._check_fitted()
        return False

    def item_popularity(self) -> np.ndarray:
        """Distinct users per item in the stored training histories, (n_items,) float32:
        what a history without events is ranked by (here and in the service)."""
        self._check_fitted()
        users = self.history_.to_csr()  # one entry per (user, item) pair
        return np.bincount(users.indices, minlength=self.n_items).astype(np.float32)

    # ------------------------------------------------------------------ retrieval form
    def retrieval_items(self) -> np.ndarray | None:
        """Item side of the model's dot-product form, (n_items, d) float32, or None.

        Models that score ``score(h) = retrieval_queries(h) @ retrieval_items().T`` return
        their item matrix here, so a nearest-neighbour index
        (:class:`recstack.ranking.ItemIndex`) can replace the full scoring of a large
        catalog.
        """
        return None

    def retrieval_queries(self, histories: Histories) -> np.ndarray:
        """Query side of the dot-product form, (n, d) float32 (see :meth:`retrieval_items`)."""
        raise RecstackError(f"{type(self).__name__} has no dot-product form")

    # ------------------------------------------------------------------ similar items
    def item_vectors(self) -> np.ndarray | None:
        """Item representation for :meth:`similar_items`, shape (n_items, d), or None."""
        return None

    def similar_items(
        self, items: Sequence[object] | np.ndarray, k: int = 10, unknown: UnknownPolicy = "raise"
    ) -> Recommendations:
        """The ``k`` items most cosine-similar to each query item (the item itself excluded)."""
        self._check_fitted()
        vecs = self.item_vectors()
        if vecs is None:
            raise RecstackError(f"{type(self).__name__} has no item representation to compare")
        queries = as_id_array(items)
        idx = self.items_.index(queries, unknown=unknown)
        vecs = np.asarray(vecs, dtype=np.float32)
        norm = np.linalg.norm(vecs, axis=1, keepdims=True)
        unit = vecs / np.where(norm > 0, norm, 1)
        q = np.maximum(idx, 0)
        scores = unit[q] @ unit.T  # (n_queries, n_items) cosine
        self_mask = sp.csr_matrix(
            (np.ones(len(q), np.float32), (np.arange(len(q)), q)), shape=scores.shape
        )
        index, top = topk(scores, k, exclude=self_mask)
        index[idx < 0], top[idx < 0] = -1, -np.inf  # an unknown query item gets no list
        return Recommendations(queries, index, top, self.items_, idx >= 0)

    # ------------------------------------------------------------------ persistence
    def _learned_arrays(self) -> dict[str, np.ndarray]:
        """Learned array state, named as in :meth:`save`'s ``arrays.npz``: arrays as they are,
        numpy scalars as ``key:scalar``, sparse matrices as their parts (``key:data``,
        ``key:indices``, ``key:indptr``, ``key:shape``, ``key:class``; formats other than
        CSR/CSC become CSR). The ID maps and the history store are saved apart."""
        out: dict[str, np.ndarray] = {}
        for key in self._learned_keys():
            val: Any = getattr(self, key)
            if key in _SAVED_APART:
                continue
            if isinstance(val, np.ndarray):
                out[key] = val
            elif isinstance(val, np.generic):
                out[f"{key}:scalar"] = np.asarray(val)
            elif sp.issparse(val):
                m: Any = getattr(self, key)  # (issparse narrows to a stub without .tocsr)
                if type(m).__name__ not in _SPARSE:
                    m = m.tocsr()  # COO, LIL, ...: CSR of the same kind (matrix or array)
                out[f"{key}:data"], out[f"{key}:indices"] = m.data, m.indices
                out[f"{key}:indptr"] = m.indptr
                out[f"{key}:shape"] = np.asarray(m.shape, dtype=np.int64)
                out[f"{key}:class"] = np.asarray(type(m).__name__)
        return out

    def _learned_scalars(self) -> dict[str, Any]:
        """Learned state that is a JSON value (number, string, bool, None, list, dict)."""
        return {
            k: getattr(self, k)
            for k in self._learned_keys()
            if k not in _SAVED_APART and _is_json(getattr(self, k))
        }

    def save(self, path: str | Path) -> Path:
        """Save to directory ``path``: ``config.json``, ``arrays.npz``, ``users.parquet``,
        ``items.parquet`` and, when the data had them, ``item_features.parquet``. No pickle
        anywhere: loading never executes code.

        Raises
        ------
        ConfigError
            The class is not registered under its ``name`` (``load`` could not rebuild it),
            a parameter is not a JSON value, or a learned attribute is neither an array, a
            sparse matrix, a numpy scalar nor a JSON value.
        """
        from recstack import __version__
        from recstack.models.registry import get_model_class

        self._check_fitted()
        try:
            registered: type | None = get_model_class(self.name)
        except ConfigError:
            registered = None
        if registered is not type(self):
            raise ConfigError(
                f"{type(self).__name__} is not registered as {self.name!r}, so load() could "
                "not rebuild it; add it to recstack.models.registry.REGISTRY"
            )
        arrays = self._learned_arrays()
        state = self._learned_scalars()
        saved = {k.partition(":")[0] for k in arrays} | set(state) | set(_SAVED_APART)
        for key in self._learned_keys():
            if key not in saved:
                raise ConfigError(
                    f"{type(self).__name__}: cannot save learned attribute {key!r} of type "
                    f"{type(getattr(self, key)).__name__}; keep learned state in arrays, sparse "
                    "matrices or JSON values (derived state goes in a _private attribute "
                    "rebuilt by _after_load)"
                )
        for key, arr in arrays.items():
            if arr.dtype.hasobject:
                raise ConfigError(
                    f"{type(self).__name__}: learned array {key!r} has dtype object, which "
                    "cannot be saved without pickle"
                )
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = {
            "format": FORMAT_VERSION,
            "model": self.name,
            "class": type(self).__name__,
            "params": self.get_params(),
            "state": state,
            "recstack_version": __version__,
            "n_users": len(self.users_),
            "n_items": len(self.items_),
            "users_sha256": self.users_.checksum(),
            "items_sha256": self.items_.checksum(),
        }
        try:
            text = json.dumps(config, indent=2)
        except TypeError as exc:
            raise ConfigError(
                f"{type(self).__name__}: parameters must be JSON values ({exc})"
            ) from exc
        h = self.history_
        arrays.update(
            {
                "history:indptr": h.indptr,
                "history:items": h.items,
                "history:values": h.values,
                "history:times": h.times,
            }
        )
        np.savez(path / "arrays.npz", allow_pickle=False, **arrays)
        self.users_.to_frame().to_parquet(path / "users.parquet", index=False)
        self.items_.to_frame().to_parquet(path / "items.parquet", index=False)
        if self.item_features_ is not None:
            self.item_features_.to_parquet(path / "item_features.parquet")
        self._save_extra(path)
        (path / "config.json").write_text(text)  # last: a directory with it is complete
        return path

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load a model saved by :meth:`save`; the class comes from the registry by name."""
        from recstack.models.registry import get_model_class

        path = Path(path)
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise DataError(f"{path}: not a saved model directory (no config.json)")
        try:
            config = json.loads(cfg_file.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{cfg_file}: not valid JSON ({exc})") from exc
        if config.get("format") != FORMAT_VERSION:
            raise DataError(f"{cfg_file}: unsupported format {config.get('format')!r}")
        missing = [
            k for k in ("model", "params", "users_sha256", "items_sha256") if k not in config
        ]
        if missing:
            raise DataError(f"{cfg_file}: no {missing[0]!r} entry")
        klass = get_model_class(config["model"])
        if cls is not Recommender and not issubclass(klass, cls):
            raise DataError(f"{path} holds a {klass.__name__}, not a {cls.__name__}")
        klass.check_param_names(list(config["params"]))
        model = klass(**config["params"])
        users = IdMap(pd.read_parquet(path / "users.parquet")["id"].to_numpy(), "user")
        items = IdMap(pd.read_parquet(path / "items.parquet")["id"].to_numpy(), "item")
        for kind, m in (("users", users), ("items", items)):
            if m.checksum() != config[f"{kind}_sha256"]:
                raise DataError(f"{path}: {kind}.parquet does not match its checksum")
        with np.load(path / "arrays.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        model.users_, model.items_ = users, items
        model.history_ = Histories(
            arrays.pop("history:indptr"),
            arrays.pop("history:items"),
            arrays.pop("history:values"),
            arrays.pop("history:times"),
            len(items),
            np.arange(len(users), dtype=np.int32),
        )
        features = path / "item_features.parquet"
        model.item_features_ = pd.read_parquet(features) if features.is_file() else None
        for key, val in config.get("state", {}).items():
            setattr(model, key, val)
        groups: dict[str, dict[str, np.ndarray]] = {}
        for name, arr in arrays.items():
            key, _, part = name.partition(":")
            groups.setdefault(key, {})[part] = arr
        for key, parts in groups.items():
            setattr(model, key, _restore(path, key, parts))
        model._load_extra(path)
        model._after_load()
        return model

    def _save_extra(self, path: Path) -> None:
        """Write state kept outside arrays and JSON (a network's weights) into ``path``."""

    def _load_extra(self, path: Path) -> None:
        """Read back what :meth:`_save_extra` wrote (never through pickle)."""

    def _after_load(self) -> None:
        """Rebuild derived state after :meth:`load` (e.g. move tensors to a device)."""


#: learned attributes that :meth:`Recommender.save` writes apart from ``arrays.npz``
_SAVED_APART = ("users_", "items_", "history_", "item_features_")
#: sparse classes saved as they are (by name: loading never imports what a file names)
_SPARSE: dict[str, Any] = {
    c.__name__: c for c in (sp.csr_matrix, sp.csc_matrix, sp.csr_array, sp.csc_array)
}
_SPARSE_PARTS = {"data", "indices", "indptr", "shape", "class"}


def _is_json(val: object) -> bool:
    """``val`` survives a JSON round trip unchanged (numpy scalars go to ``arrays.npz``)."""
    if isinstance(val, np.generic):
        return False
    if val is None or isinstance(val, bool | int | float | str):
        return True
    if isinstance(val, list):
        return all(_is_json(v) for v in val)
    if isinstance(val, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in val.items())
    return False


def _restore(path: Path, key: str, parts: dict[str, np.ndarray]) -> Any:
    """A learned attribute from its ``arrays.npz`` entries (see ``_learned_arrays``)."""
    if set(parts) == {""}:
        return parts[""]
    if set(parts) == {"scalar"}:
        return parts["scalar"][()]
    if set(parts) == _SPARSE_PARTS and str(parts["class"]) in _SPARSE:
        shape = tuple(int(x) for x in parts["shape"])
        return _SPARSE[str(parts["class"])](
            (parts["data"], parts["indices"], parts["indptr"]), shape=shape
        )
    raise DataError(f"{path}/arrays.npz: unreadable entries for {key!r}: {sorted(parts)}")
