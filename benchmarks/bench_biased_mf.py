"""BiasedMF against Surprise's SVD: rating prediction on ML-100K, and top-K on the shared
protocol.

- Rating prediction (``--ratings``): a seeded random 80/20 split of all ML-100K ratings
  (per event, not per user; seed 0), the same split handed to Surprise through
  ``surprise.Dataset.load_from_df``. Hyper-parameters of both libraries are chosen on a
  validation part of the training ratings (a seeded random 1/8 of them, seed 1); the chosen
  settings are refit on the whole training part and tested. recstack's predictions come from
  :func:`recstack.evaluation.evaluate` (``predict`` with each user's training history, i.e.
  the fold-in; the script checks that the fold-in reproduces the trained user parameters).
  Surprise predicts with ``algo.test`` (clipped to [1, 5], as recstack clips to the training
  range). Fit times (best of 3 fits): Surprise is single-threaded; recstack's ALS is timed
  on 2 and 1 numba threads (SGD is serial), after a warm-up so numba's compilation is not
  counted.
- Top-K (``--topk``): ``_protocol.tune_and_test`` (validation NDCG@10, refit on
  train + valid, test) on the peers' leave-last-out split, scoring items by predicted rating.

Run: ``python benchmarks/bench_biased_mf.py --ratings --topk``.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numba
import numpy as np
import pandas as pd

from _protocol import ML100K, machine, peer_split, tune_and_test
from recstack.data import Interactions
from recstack.data.readers import load_dataset
from recstack.data.splits import Split
from recstack.evaluation import evaluate
from recstack.models.biased_mf import BiasedMF

#: validation grids (the defaults unless given: ALS 6 sweeps, SGD 40 epochs)
ALS_GRID: dict[str, list[Any]] = {
    "factors": [20, 50, 100],
    "reg": [0.08, 0.12, 0.16],
    "bias_reg": [0.02, 0.05],
    "iterations": [6, 10],
}
SGD_GRID: dict[str, list[Any]] = {
    "method": ["sgd"],
    "factors": [50, 100],
    "reg": [0.08, 0.12],
    "learning_rate": [0.01],
}
SURPRISE_GRID: dict[str, list[Any]] = {
    "n_factors": [50, 100],
    "n_epochs": [20, 40],
    "lr_all": [0.005, 0.01],
    "reg_all": [0.02, 0.05, 0.1],
}
#: fits per row of the final table; its fit time is the best of them
REPEAT = 3
TOPK_GRID: dict[str, list[Any]] = {"factors": [0, 50, 100], "reg": [0.05, 0.12]}
#: the peers' refit rows on the shared protocol (../shared/peers/README.md), NDCG@10
PEERS_NDCG10 = {"numpy Pop": 0.0441, "implicit ALS": 0.0756, "numpy EASE": 0.0723}


def grid(space: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    keys = list(space)
    return [dict(zip(keys, v, strict=True)) for v in itertools.product(*space.values())]


def random_split(data: Interactions, test: float, seed: int) -> Split:
    """A seeded random split of all events (not per user), one ID space."""
    mask = np.zeros(data.n_events, dtype=bool)
    mask[np.random.default_rng(seed).permutation(data.n_events)[: round(test * data.n_events)]] = 1
    return Split(data.select(~mask), None, data.select(mask))


def markdown(table: pd.DataFrame) -> str:
    """A markdown table (numbers to 4 decimals; NaN blank), without tabulate."""
    cells = [["", *map(str, table.columns)]]
    for name, row in table.iterrows():
        cells.append([str(name), *("" if pd.isna(v) else f"{v:.4f}" for v in row)])
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    lines.insert(1, "|" + "---|" * len(cells[0]))
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the two sides
def recstack_errors(params: dict[str, Any], split: Split, repeat: int = 1) -> dict[str, float]:
    fit = np.inf
    for _ in range(repeat):  # the best of ``repeat`` fits: the machine may be shared
        t0 = time.perf_counter()
        model = BiasedMF(**params).fit(split.train)
        fit = min(fit, time.perf_counter() - t0)
    metrics = evaluate(model, split, progress=False).metrics
    return {"rmse": metrics["rmse"], "mae": metrics["mae"], "fit_s": fit}


def surprise_errors(make: Callable[[], Any], split: Split, repeat: int = 1) -> dict[str, float]:
    import surprise

    cols = ["user_id", "item_id", "rating"]
    reader = surprise.Reader(rating_scale=(1, 5))
    trainset = surprise.Dataset.load_from_df(split.train.to_frame()[cols], reader)
    test = split.test.to_frame()[cols]
    testset = list(test.itertuples(index=False, name=None))
    fit = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        algo = make().fit(trainset.build_full_trainset())
        fit = min(fit, time.perf_counter() - t0)
    preds = algo.test(testset)
    return {
        "rmse": surprise.accuracy.rmse(preds, verbose=False),
        "mae": surprise.accuracy.mae(preds, verbose=False),
        "fit_s": fit,
    }


def svd(**params: Any) -> Callable[[], Any]:
    import surprise

    return lambda: surprise.SVD(random_state=0, **params)


def best_on_valid(
    name: str, space: Mapping[str, Sequence[Any]], run: Callable[[dict[str, Any]], dict]
) -> dict[str, Any]:
    best: tuple[float, dict[str, Any]] | None = None
    for params in grid(space):
        res = run(params)
        print(f"  {name} valid rmse {res['rmse']:.4f} mae {res['mae']:.4f}  {params}", flush=True)
        if best is None or res["rmse"] < best[0]:
            best = (res["rmse"], params)
    assert best is not None
    print(f"  {name}: best on valid {best[1]} (rmse {best[0]:.4f})", flush=True)
    return best[1]


def check_fold_in(train: Interactions) -> float:
    """Largest difference between the trained user parameters and their fold-in."""
    model = BiasedMF().fit(train)
    bias, factors = model.fold_in(train.histories())
    return float(
        max(
            np.abs(bias - model.user_bias_).max(),
            np.abs(factors - model.user_factors_).max(),
        )
    )


# ---------------------------------------------------------------------------- experiments
def ratings() -> pd.DataFrame:
    import surprise

    data = load_dataset(ML100K)
    assert isinstance(data, Interactions)
    split = random_split(data, 0.2, seed=0)
    tune = random_split(split.train, 0.125, seed=1)
    print(f"ML-100K random split: train {split.train.n_events:,}, test {split.test.n_events:,}")
    BiasedMF(factors=4, iterations=1).fit(tune.train)  # numba compilation, not timed
    BiasedMF(factors=4, iterations=1, method="sgd").fit(tune.train)

    als = best_on_valid("recstack ALS", ALS_GRID, lambda p: recstack_errors(p, tune))
    sgd = best_on_valid("recstack SGD", SGD_GRID, lambda p: recstack_errors(p, tune))
    sur = best_on_valid("Surprise SVD", SURPRISE_GRID, lambda p: surprise_errors(svd(**p), tune))
    print(f"fold-in of the training histories vs trained user parameters: max |diff| "
          f"{check_fold_in(split.train):.3g}")  # fmt: skip

    rows: dict[str, dict[str, Any]] = {}
    rows["Surprise SVD, defaults"] = surprise_errors(svd(), split, REPEAT)
    rows[f"Surprise SVD, tuned {sur}"] = surprise_errors(svd(**sur), split, REPEAT)
    rows["Surprise BaselineOnly (ALS biases)"] = surprise_errors(
        surprise.BaselineOnly, split, REPEAT
    )
    rows["recstack BiasedMF, defaults (ALS)"] = recstack_errors({}, split, REPEAT)
    numba.set_num_threads(1)
    rows["recstack BiasedMF, defaults (ALS), 1 thread"] = recstack_errors({}, split, REPEAT)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    rows[f"recstack BiasedMF, tuned {als}"] = recstack_errors(als, split, REPEAT)
    rows[f"recstack BiasedMF, tuned {sgd}"] = recstack_errors(sgd, split, REPEAT)
    rows["recstack BiasedMF, factors=0 (biases)"] = recstack_errors({"factors": 0}, split, REPEAT)
    table = pd.DataFrame(rows).T
    ref = table.loc["Surprise SVD, defaults", "rmse"]
    ref_tuned = table.filter(like="Surprise SVD, tuned", axis=0)["rmse"].iloc[0]
    table["rmse / SVD defaults"] = table["rmse"] / ref
    table["rmse / SVD tuned"] = table["rmse"] / ref_tuned
    return table


def topk() -> pd.DataFrame:
    split = peer_split()
    res = tune_and_test(BiasedMF, TOPK_GRID, split)
    test = res["test"]
    row = {k: test[k] for k in ("hr@10", "ndcg@10", "hr@20", "ndcg@20", "rmse", "mae")}
    print(f"BiasedMF top-K: best on valid {res['params']}, fit {res['fit_seconds']:.2f}s")
    table = pd.DataFrame({f"recstack BiasedMF {res['params']}": row}).T
    for name, ndcg in PEERS_NDCG10.items():
        table.loc[f"{name} (peers' refit row)", "ndcg@10"] = ndcg
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratings", action="store_true", help="RMSE/MAE against Surprise")
    parser.add_argument("--topk", action="store_true", help="NDCG on the shared protocol")
    args = parser.parse_args()
    if not (args.ratings or args.topk):
        args.ratings = args.topk = True
    import surprise

    print(
        machine(),
        f"| surprise {surprise.__version__}",
        f"| numba threads {numba.get_num_threads()}",
    )
    if args.ratings:
        print(markdown(ratings()), flush=True)
    if args.topk:
        print(markdown(topk()), flush=True)


if __name__ == "__main__":
    main()
