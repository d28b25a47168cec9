"""``SequentialRecommender``: the contract for torch models that read ordered histories.

A subclass builds a network mapping padded item sequences (B, L) to hidden states
(B, L, D) and says how a training window becomes (inputs, targets); this class owns the
rest: windows, the shared training loop (:mod:`.training`), validation NDCG@10 for early
stopping, batched scoring from the last ``max_len`` history items (so known users, new
users and anonymous sessions are one path), and saving the weights as safetensors.
"""

from __future__ import annotations

import math
import numbers
import warnings
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import nn

from recstack.data import Histories, Interactions
from recstack.errors import ConfigError, DataError
from recstack.models.base import Recommender, batch_rows
from recstack.models.neural.sequences import (
    gap_tokens,
    items_before_windows,
    last_items,
    shuffle_ties,
    tie_orders,
    training_windows,
)
from recstack.models.neural.training import TrainConfig, init_distributed, train, trim_padding

LOSSES = ("ce", "sampled")
_Ints = TypeVar("_Ints", np.ndarray, torch.Tensor)
WEIGHTS_FILE = "weights.safetensors"


class _LastHidden(nn.Module):
    """``last_hidden(net, inputs)`` as one module, the unit :func:`torch.jit.trace` takes."""

    def __init__(self, net: nn.Module, last_hidden: Any) -> None:
        super().__init__()
        self.net = net
        self.last_hidden = last_hidden

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.last_hidden(self.net, inputs).float()


class SequentialRecommender(Recommender):
    """Base of the sequential torch models (see the module docstring).

    Subclasses set ``name``, implement :meth:`_build_net` (an ``nn.Module`` with an
    ``item_emb`` embedding of ``n_items + 2`` rows: 0 = padding, ``n_items + 1`` = a mask
    token for the models that use one) and :meth:`_hidden`; they may override
    :meth:`_pairs` (default: next-item targets at every position) and
    :meth:`_score_inputs`. A model with a ``time_gaps`` parameter (SASRec) reads tokens
    (:func:`~recstack.models.neural.sequences.gap_tokens`) instead of items when it is on:
    :meth:`_items_of` turns them back into items.

    Common parameters
    -----------------
    dim : int
        Embedding and hidden size.
    max_len : int
        History items the network reads (the latest ones).
    dropout : float in [0, 1)
    epochs : int
        Upper bound on training epochs (an epoch = every training window once).
    batch_size : int
        Windows per step.
    learning_rate, weight_decay : float
        AdamW's (no decay on embeddings, biases and norms).
    warmup_steps : int
        Linear learning-rate warm-up.
    clip_norm : float
        Gradient norm clipping (0: none).
    patience : int
        Epochs without a better validation NDCG@10 before stopping (when ``fit`` gets
        ``valid``; the best epoch's weights are kept).
    loss : {"ce", "sampled"}
        Full-catalog softmax cross-entropy, or sampled softmax with logQ correction over
        ``negatives`` popularity-drawn items (large catalogs).
    negatives : int
        Negatives per batch for ``loss="sampled"``.
    exclude_seen : bool
        (SASRec, GRU4Rec, Caser; ``loss="ce"``) Leave the items each position has seen
        (its history's earlier items, within the window the network reads and before it)
        out of its training softmax, as ``recommend`` leaves a history's items out by
        default; the position's own target stays in when it is a repeat. False to
        recommend items again (``recommend(..., exclude_seen=False)``, repeat consumption),
        which a model trained with True never learned to rank.
    shuffle_ties : bool
        Each epoch, put each run of a history's events with the same time in a fresh
        random order (:func:`~recstack.models.neural.sequences.shuffle_ties`): the log's
        order among events of one second (or one day) is arbitrary, and a model should not
        learn it. Data without timestamps has no ties (times are positions). True by
        default for SASRec (measured on ML-100K: BENCHMARKS.md); False for the others
        (GRU4Rec: validation up, test down in one run; the rest not measured).
    tie_orders : int
        Scoring reads each history in this many orders of the events that share its
        latest event's time (the log's and ``tie_orders - 1`` others,
        :func:`~recstack.models.neural.sequences.tie_orders`) and averages the hidden
        states, so the scores (linear in them) are the mean over the orders. Only the
        histories whose latest event has ties cost more (45% of ML-100K's users), and a
        causal Transformer (SASRec) runs only their reordered tail again, reading the
        rest from the log order's pass. 1: the log's order only (the default; SASRec's is
        4, measured in BENCHMARKS.md).
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    seed : int
        Seeds weights, batches and sampling: a CPU fit is reproducible.
    verbose : bool
        Show a progress bar with the loss and the validation metric.
    """

    #: outputs do not depend on leading all-padding input columns (see TrainConfig)
    trims_padding: ClassVar[bool] = False
    #: overridden by the models with an ``exclude_seen`` or ``time_gaps`` parameter
    exclude_seen: bool = False
    time_gaps: bool = False
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "dim": ("categorical", [32, 64, 128]),
        "dropout": ("float", 0.0, 0.5),
        "learning_rate": ("float", 1e-4, 1e-2, "log"),
        "weight_decay": ("float", 0.0, 0.5),
        "max_len": ("categorical", [20, 50, 100, 200]),
        "shuffle_ties": ("categorical", [False, True]),
    }

    dim: int
    max_len: int
    dropout: float
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    warmup_steps: int
    clip_norm: float
    patience: int
    loss: str
    negatives: int
    shuffle_ties: bool
    tie_orders: int
    device: str
    seed: int
    verbose: bool
    _net: nn.Module
    _n_items: int

    def _common_init(self, params: dict[str, Any]) -> None:
        for key, value in params.items():
            if key not in ("self", "__class__"):
                setattr(self, key, value)

    # ------------------------------------------------------------------ parameters
    def _validate_params(self) -> None:
        for key in (
            "dim",
            "max_len",
            "epochs",
            "batch_size",
            "negatives",
            "patience",
            "tie_orders",
        ):
            _check_int(key, getattr(self, key), 1)
        _check_int("warmup_steps", self.warmup_steps, 0)
        _check_int("seed", self.seed, 0)
        _check_float("dropout", self.dropout, 0.0, 1.0, hi_open=True)
        _check_float("learning_rate", self.learning_rate, 0.0, math.inf, lo_open=True)
        _check_float("weight_decay", self.weight_decay, 0.0, math.inf)
        _check_float("clip_norm", self.clip_norm, 0.0, math.inf)
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        for key in ("verbose", "exclude_seen", "shuffle_ties", "time_gaps"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"{key} must be True or False, got {getattr(self, key)!r}")
        self._device()  # a bad device name fails here, before training

    def _device(self) -> torch.device:
        if self.device == "auto":
            if not torch.cuda.is_available():
                return torch.device("cpu")
            return torch.device("cuda", torch.cuda.current_device())  # torchrun: LOCAL_RANK
        try:
            dev = torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise ConfigError(f"device: {exc} (got {self.device!r})") from exc
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device={self.device!r} but CUDA is not available")
        return dev

    # ------------------------------------------------------------------ subclass hooks
    def _build_net(self, n_items: int) -> nn.Module:
        raise NotImplementedError

    def _hidden(self, net: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, L, D) of padded inputs (B, L) (``net`` may be DDP-wrapped)."""
        return net(inputs)

    def _last_hidden(self, net: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """Hidden state (B, D) at the last position, which scoring reads."""
        return self._hidden(net, inputs)[:, -1]

    def _pairs(
        self, windows: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Next-item training: each position predicts the following item (0: no target)."""
        inputs, targets = windows[:, :-1], self._items_of(windows[:, 1:])
        return inputs, torch.where(inputs > 0, targets, 0)

    def _tokens(self, histories: Histories) -> Histories:
        """What the network reads of ``histories``: their items, or with ``time_gaps``
        their :func:`~recstack.models.neural.sequences.gap_tokens`."""
        return gap_tokens(histories) if self.time_gaps else histories

    def _token_base(self) -> int:
        """Tokens are ``item + base * gap bucket`` (:func:`gap_tokens`); 0: the inputs are
        items."""
        return self._n_items + 2 if self.time_gaps else 0

    def _items_of(self, inputs: _Ints) -> _Ints:
        """The shifted items (0: padding) of network inputs or windows: tokens with
        ``time_gaps``."""
        base = self._token_base()
        return inputs % base if base else inputs

    def _score_inputs(self, histories: Histories) -> np.ndarray:
        """The (n, max_len) padded network inputs of histories (latest item last)."""
        return last_items(self._tokens(histories), self.max_len)

    def _training_catalog(self, train_data: Interactions) -> np.ndarray | None:
        """(n_items,) bool: the items the training loss ranges over (None: all)."""
        return None

    def _output_items(self, net: nn.Module) -> torch.Tensor:
        """Output embeddings of the catalog's items, (n_items, D) (tied to the input ones)."""
        emb: nn.Embedding = net.item_emb  # type: ignore[assignment]
        return emb.weight[1 : self._n_items + 1]

    # ------------------------------------------------------------------ fitting
    def _fit(self, train_data: Interactions, valid: Interactions | None) -> None:
        init_distributed()  # under torchrun, every process trains on its share of windows
        torch.manual_seed(self.seed)  # same initial weights in every process
        device = self._device()
        self._n_items = train_data.n_items
        self._net = self._build_net(train_data.n_items).to(device)
        histories = train_data.histories()
        windows = training_windows(self._tokens(histories), self.max_len)
        if len(windows) == 0:
            raise DataError(
                f"{type(self).__name__}: no history has 2 events or more, so there is no "
                "next item to learn from"
            )
        catalog = self._training_catalog(train_data)
        log_q = None
        if self.loss == "sampled":
            counts = np.bincount(train_data.item, minlength=train_data.n_items) + 1.0
            if catalog is not None:
                counts[~catalog] = 0.0  # never drawn as negatives
            with np.errstate(divide="ignore"):
                log_q = torch.from_numpy(np.log(counts / counts.sum())).float().to(device)
        validate = None
        if valid is not None and valid.n_events:
            validate = self._validator(train_data, valid)
        config = TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            warmup_steps=self.warmup_steps,
            clip_norm=self.clip_norm,
            patience=self.patience,
            loss=self.loss,
            negatives=self.negatives,
            seed=self.seed,
            verbose=self.verbose,
            name=type(self).__name__,
            trim_padding=self.trims_padding,
            exclude_seen=self.exclude_seen,
            token_base=self._token_base(),
        )
        result = train(
            self._net,
            self._hidden,
            self._output_items,
            windows,
            self._pairs,
            config,
            device,
            log_q=log_q,
            catalog=None if catalog is None else torch.from_numpy(catalog).to(device),
            validate=validate,
            before=(
                items_before_windows(histories, self.max_len)
                if self.exclude_seen and self.loss == "ce"
                else None
            ),
            epoch_windows=(
                (
                    lambda rng: training_windows(
                        self._tokens(shuffle_ties(histories, rng)), self.max_len
                    )
                )
                if self.shuffle_ties
                else None
            ),
        )
        self.best_epoch_ = int(result.best_epoch)
        self.epochs_run_ = int(result.epochs_run)
        self.best_valid_ndcg_ = None if math.isnan(result.best_valid) else result.best_valid
        #: per epoch [epoch, mean training loss, validation NDCG@10 or None, seconds]
        self.training_log_ = [
            [e, loss, None if math.isnan(v) else v, sec] for e, loss, v, sec in result.history
        ]

    def _validator(self, train_data: Interactions, valid: Interactions) -> Any:
        """NDCG@10 of each validation user's first held-out item, scored from the train
        history with its items excluded (ties count against the target), in the log's
        order only (``tie_orders`` is a scoring option): cheaper per epoch, and how the
        defaults were measured (one run validating with 4 orders stopped at a noisy peak;
        BENCHMARKS.md)."""
        users = np.unique(valid.user)
        first = valid.indptr[users]  # each user's first held-out event
        target = valid.item[first].astype(np.int64)
        hist = train_data.histories(users)
        keep = hist.lengths > 0
        hist, target = hist.select(keep), target[keep]
        seen = hist.to_csr()

        def ndcg10() -> float:
            total = 0.0
            for start in range(0, len(hist), 1024):
                rows = np.arange(start, min(start + 1024, len(hist)))
                s = self._raw_scores(hist.select(rows), orders=1)
                t = torch.from_numpy(target[rows])
                tgt = s[torch.arange(len(rows)), t].clone()
                sub = seen[rows].tocoo()
                s[torch.from_numpy(sub.row).long(), torch.from_numpy(sub.col).long()] = -torch.inf
                rank = (s > tgt[:, None]).sum(1)
                total += float(torch.where(rank < 10, 1 / torch.log2(rank + 2.0), 0).sum())
            return total / max(1, len(hist))

        return ndcg10

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def _last_states(self, histories: Histories, orders: int | None = None) -> torch.Tensor:
        """(n, D) float32 hidden states at the scored position (on the model's device),
        averaged over ``orders`` (default ``tie_orders``) orders of the events tied with
        each history's latest."""
        device = next(self._net.parameters()).device
        n = self.tie_orders if orders is None else orders
        windows = [self._score_inputs(h) for h in tie_orders(histories, n)]
        base = windows[0]
        # only the rows an order changes are run again; the others add the log order's state
        rows = [np.flatnonzero((x != base).any(axis=1)) for x in windows[1:]]
        changed = np.concatenate([np.zeros(0, dtype=np.int64), *rows])
        if not len(changed):
            return self._states(self._to_device(base))
        variants = np.concatenate([x[r] for x, r in zip(windows[1:], rows, strict=True)])
        logged, reordered = self._variant_states(base, variants, changed)
        idx = torch.from_numpy(changed).to(device)
        total = (logged * len(windows)).index_add_(0, idx, reordered - logged[idx])
        return total / len(windows)

    def _to_device(self, inputs: np.ndarray) -> torch.Tensor:
        """Padded network inputs (B, L) as a tensor on the model's device, without the
        leading all-padding columns when the network allows (``trims_padding``)."""
        out = torch.from_numpy(inputs).to(next(self._net.parameters()).device)
        if self.trims_padding:
            (out,) = trim_padding(out)
        return out

    def _variant_states(
        self, base: np.ndarray, variants: np.ndarray, rows: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states (B, D) of padded inputs ``base`` (B, L) and (V, D) of
        ``variants`` (V, L), other orders of rows ``rows`` (V,) of ``base``."""
        states = self._states(self._to_device(np.concatenate([base, variants])))
        return states[: len(base)], states[len(base) :]

    @torch.no_grad()
    def _states(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, D) float32 hidden states at the scored position of padded network inputs
        (B, L) on the model's device: the traced network after :meth:`optimize_inference`."""
        net = self._net
        if net.training:  # a walk over every module: not on each request
            net.eval()
        traced = getattr(self, "_traced", None)
        if traced is not None and traced[0] is net:  # not a network fitted or grown since
            # the plain graph interpreter: the profiling executor's specializations are
            # slower here (measured, 1.4 vs 1.9 ms a call) and change with every shape
            with torch.jit.optimized_execution(False):
                return traced[1](inputs)
        device = inputs.device
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            return self._last_hidden(net, inputs).float()

    def optimize_inference(self) -> bool:
        """Trace the scoring network with TorchScript (on CPU).

        A traced forward pass runs in C++ without Python between operators: about half
        the cost of scoring one history, and the interpreter's lock stays free for other
        threads (a service's event loop) while it runs. The traced module is checked
        against the eager one on inputs of several shapes; a tracing error or any
        difference keeps the eager path. A new network (fitting again, added items) is
        scored eagerly until this is called again.

        Returns
        -------
        bool
            Whether scoring now runs the traced module.
        """
        self._check_fitted()
        self._traced = None
        net = self._net.eval()
        if next(net.parameters()).device.type != "cpu":
            return False
        wrapper = _LastHidden(net, self._last_hidden).eval()
        gen = torch.Generator().manual_seed(0)

        def sample(batch: int, length: int) -> torch.Tensor:
            x = torch.randint(1, self._n_items + 1, (batch, length), generator=gen)
            x[0, : length // 2] = 0  # a left-padded row
            return x

        length = self.max_len
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's notes on Python values
                traced = torch.jit.trace(wrapper, sample(4, length))
                for batch, size in ((1, length), (3, length), (2, max(1, length // 3)), (1, 1)):
                    x = sample(batch, size) if size > 1 else torch.ones(batch, 1, dtype=torch.long)
                    if not torch.allclose(traced(x), wrapper(x), rtol=1e-4, atol=1e-5):
                        return False
        except (RuntimeError, torch.jit.Error):
            return False
        self._traced = (net, traced)
        return True

    @torch.no_grad()
    def _raw_scores(self, histories: Histories, orders: int | None = None) -> torch.Tensor:
        """(n, n_items) float32 CPU scores: last hidden state (averaged over ``orders``,
        default ``tie_orders``) times the output items."""
        out = self._last_states(histories, orders) @ self._output_items(self._net).float().T
        return out.float().cpu()

    def retrieval_items(self) -> np.ndarray:
        self._check_fitted()
        with torch.no_grad():
            return self._output_items(self._net).float().cpu().numpy()

    def retrieval_queries(self, histories: Histories) -> np.ndarray:
        self._check_fitted()
        return self._last_states(histories).cpu().numpy()

    def _score(self, histories: Histories) -> np.ndarray:
        out = np.empty((len(histories), self._n_items), dtype=np.float32)
        step = min(batch_rows(self._n_items), 1024)
        for start in range(0, len(histories), step):
            rows = np.arange(start, min(start + step, len(histories)))
            out[rows] = self._raw_scores(histories.select(rows)).numpy()
        return out

    def item_vectors(self) -> np.ndarray:
        self._check_fitted()
        return self._output_items(self._net).detach().float().cpu().numpy()

    # ------------------------------------------------------------------ persistence
    def _save_extra(self, path: Path) -> None:
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in self._net.state_dict().items()}
        save_file(state, str(path / WEIGHTS_FILE))

    def _load_extra(self, path: Path) -> None:
        from safetensors.torch import load_file

        file = path / WEIGHTS_FILE
        if not file.is_file():
            raise DataError(f"{path}: no {WEIGHTS_FILE} (the network's weights)")
        self._n_items = len(self.items_)
        self._net = self._build_net(self._n_items)
        try:
            self._net.load_state_dict(load_file(str(file)))
        except RuntimeError as exc:
            raise DataError(f"{file}: weights do not fit the model's parameters ({exc})") from exc
        self._net.to(self._device()).eval()


def _check_int(name: str, value: object, low: int) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_float(
    name: str, value: object, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False
) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    v = float(value) if ok else math.nan  # type: ignore[arg-type]
    if not ok or not (v > lo if lo_open else v >= lo) or not (v < hi if hi_open else v <= hi):
        bounds = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ConfigError(f"{name} must be a number in {bounds}, got {value!r}")
