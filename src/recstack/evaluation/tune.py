"""Hyper-parameter search on the validation split (optuna's TPE sampler).

Each model declares its search space in the class attribute ``search_space``:
``{"factors": ("int", 16, 256, "log"), "alpha": ("float", 0.1, 50.0, "log"),
"weighting": ("categorical", ["none", "bm25"])}``. Trials fit on ``split.train`` and score
validation users from train (``evaluate(..., on="valid")``); the test split is never seen.
With ``origins > 1`` each trial is scored on the mean over the split's validation and earlier
rolling origins (:func:`~recstack.data.splits.rolling_origins`): a less noisy choice, at one
fit per origin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from recstack.data.splits import Split, rolling_origins
from recstack.errors import ConfigError, require
from recstack.evaluation.evaluator import evaluate
from recstack.models.registry import get_model_class

#: metrics where smaller is better
_LOWER_IS_BETTER = frozenset({"rmse", "mae"})

#: a search-space entry: ("int"|"float", low, high[, "log"]) or ("categorical", [choices])
Spec = tuple[Any, ...]


@dataclass(frozen=True)
class TuneResult:
    """Best parameters found, their validation score, and every trial."""

    model: str
    metric: str
    best_params: dict[str, Any]
    best_value: float
    trials: list[dict[str, Any]]
    #: validation origins each value is the mean over
    origins: int = 1


def _suggest(trial: Any, name: str, spec: Spec) -> Any:
    kind = spec[0]
    if kind == "int":
        return trial.suggest_int(name, int(spec[1]), int(spec[2]), log="log" in spec[3:])
    if kind == "float":
        return trial.suggest_float(name, float(spec[1]), float(spec[2]), log="log" in spec[3:])
    if kind == "categorical":
        return trial.suggest_categorical(name, list(spec[1]))
    raise ConfigError(f"search space of {name!r}: unknown kind {kind!r}")


def tune(
    model: str,
    split: Split,
    *,
    trials: int = 20,
    metric: str = "ndcg@10",
    fixed: Mapping[str, Any] | None = None,
    space: Mapping[str, Spec] | None = None,
    seed: int = 0,
    origins: int = 1,
    callback: Callable[[int, float, dict[str, Any]], None] | None = None,
) -> TuneResult:
    """Search ``model``'s parameters, optimizing validation ``metric`` (``rmse``/``mae`` are
    minimized, every other metric maximized).

    Parameters
    ----------
    model : str
        Registry name.
    split : Split
        Must have a validation part.
    trials : int
        Number of fits.
    fixed : mapping, optional
        Parameters held fixed (removed from the space).
    space : mapping, optional
        Overrides the model's ``search_space``.
    origins : int
        Validation origins a trial's value is the mean over (``rolling_origins``; one fit
        each); 1: the split's validation part alone.
    callback : callable, optional
        Called after each trial with ``(trial number, value, params)`` (progress display).
    """
    optuna = require("optuna", "tune")
    klass = get_model_class(model)
    fixed = dict(fixed or {})
    klass.check_param_names(list(fixed))
    space = dict(space if space is not None else getattr(klass, "search_space", {}))
    klass.check_param_names(list(space))
    for name in fixed:
        space.pop(name, None)
    if not space:
        raise ConfigError(f"{model} has no parameters to tune (search space is empty)")
    if split.valid is None or split.valid.n_events == 0:
        raise ConfigError("tune needs a split with a validation part (e.g. leave-last-out)")
    if trials <= 0:
        raise ConfigError(f"trials must be a positive integer, got {trials}")
    if isinstance(origins, bool) or not isinstance(origins, int) or origins < 1:
        raise ConfigError(f"origins must be a positive integer, got {origins!r}")
    parts = rolling_origins(split, origins)

    def objective(trial: Any) -> float:
        params = {**fixed, **{n: _suggest(trial, n, s) for n, s in space.items()}}
        values = []
        for part in parts:
            rec = klass(**params).fit(part.train, part.valid)
            metrics = evaluate(rec, part, on="valid", progress=False).metrics
            if metric not in metrics:
                raise ConfigError(f"unknown metric {metric!r}; available: {', '.join(metrics)}")
            values.append(float(metrics[metric]))
        value = sum(values) / len(values)
        if callback is not None:
            callback(trial.number, value, params)
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # error metrics are minimized, ranking metrics maximized
    direction = "minimize" if metric in _LOWER_IS_BETTER else "maximize"
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials)
    return TuneResult(
        model=model,
        metric=metric,
        best_params={**fixed, **study.best_params},
        best_value=float(study.best_value),
        trials=[{"number": t.number, "value": t.value, "params": t.params} for t in study.trials],
        origins=len(parts),
    )
