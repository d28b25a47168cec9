"""Score blends (``blend``) against their sub-models on ML-100K, the peers' split.

Every model is fitted on train; a blend's weights are chosen on validation NDCG@10 (its
sub-models stay fitted on train) and it is tested from the train + valid history, like the
single models fitted on train ("train" rows). The "refit" rows refit every model on train
+ valid (a blend with its weights fixed to the ones chosen on validation) and test the
same way: the peers' refit protocol.

Run: ``python benchmarks/bench_blend.py`` (about a minute on 2 cores); prints markdown.
"""

from __future__ import annotations

import time
from typing import Any

from _protocol import machine, peer_split
from recstack.data.splits import Split
from recstack.evaluation import evaluate
from recstack.models.base import Recommender
from recstack.models.blend import Blend
from recstack.models.registry import create_model

SINGLES = ("ease", "itemknn", "popularity")
BLENDS: list[tuple[str, str]] = [
    ("ease,itemknn", "zscore"),
    ("ease,itemknn", "minmax"),
    ("ease,itemknn", "rank"),
    ("ease,itemknn", "none"),
    ("ease,popularity", "zscore"),
    ("itemknn,popularity", "zscore"),
    ("ease,itemknn,popularity", "zscore"),
    ("ease,itemknn,popularity", "rank"),
]


def run(make: Any, split: Split, refit: Split) -> dict[str, Any]:
    """Fit on train (with valid), test; then refit on train + valid and test."""
    t0 = time.perf_counter()
    model: Recommender = make().fit(split.train, split.valid)
    fit = time.perf_counter() - t0
    valid = evaluate(model, split, on="valid", ks=(10,), progress=False).metrics["ndcg@10"]
    result = evaluate(model, split, ks=(10, 20), progress=False)
    test = result.metrics
    weights = model.weights_ if isinstance(model, Blend) else None
    again = make(weights=weights.tolist()) if weights is not None else make()
    test_refit = evaluate(again.fit(refit.train), refit, ks=(10,), progress=False).metrics
    return {
        "weights": "" if weights is None else " / ".join(f"{w:.2f}" for w in weights),
        "valid": valid,
        "test": test,
        "refit": test_refit["ndcg@10"],
        "fit": fit,
        "eval": result.eval_seconds,
    }


def search_seconds(models: str, normalize: str, split: Split) -> tuple[float, int, int]:
    """Time of the weight search alone (scoring the validation users with each sub-model
    and trying every grid point), through the blend's private steps; returns (seconds,
    grid points, users)."""
    from recstack.models.blend import _validation_targets, simplex_grid

    assert split.valid is not None
    model = Blend(models, normalize=normalize, weights=None).fit(split.train)
    hist, target = _validation_targets(split.train, split.valid)
    grid = simplex_grid(len(model.models_))
    t0 = time.perf_counter()
    model._grid_ndcg(hist, target, grid)
    return time.perf_counter() - t0, len(grid), len(hist)


def main() -> None:
    split = peer_split()
    refit = Split(split.test_history(), None, split.test)
    print(machine())
    rows = []
    for name in SINGLES:
        res = run(lambda name=name, **kw: create_model(name, **kw), split, refit)
        rows.append((name, "", res))
        print(f"  {name}: {res}", flush=True)
    for models, norm in BLENDS:
        res = run(lambda m=models, n=norm, **kw: Blend(m, normalize=n, **kw), split, refit)
        rows.append((f"blend {models.replace(',', ' + ')}", norm, res))
        print(f"  blend {models} {norm}: {res}", flush=True)
    print(
        "\n| model | normalize | weights (chosen on valid) | valid NDCG@10 | HR@10 | NDCG@10 "
        "| NDCG@20 | refit NDCG@10 | fit s | test eval s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, norm, r in rows:
        t = r["test"]
        print(
            f"| {label} | {norm} | {r['weights']} | {r['valid']:.4f} | {t['hr@10']:.4f} | "
            f"{t['ndcg@10']:.4f} | {t['ndcg@20']:.4f} | {r['refit']:.4f} | {r['fit']:.1f} | "
            f"{r['eval']:.2f} |"
        )
    print()
    for models, norm in (("ease,itemknn", "zscore"), ("ease,itemknn,popularity", "rank")):
        sec, points, users = search_seconds(models, norm, split)
        print(
            f"- weight search, {models} ({norm}): {sec:.2f} s for {points} weight vectors "
            f"x {users} validation users"
        )


if __name__ == "__main__":
    main()
