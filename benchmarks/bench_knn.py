"""ItemKNN and UserKNN beside implicit's nearest-neighbour models.

Quality: the shared ML-100K protocol (grid on validation NDCG@10, refit on train + valid,
test), next to the peers' rows of ../shared/peers/README.md. Speed: the item-item
similarity build (recstack ``ItemKNN.build_similarity`` and ``fit`` vs implicit's
``CosineRecommender.fit`` / ``BM25Recommender.fit``, same K, same data, 2 threads each) on
ML-100K, on a synthetic shop of 100k users x 20k items x 5M events and, with ``--big``,
on the ML-20M size (138k x 27k x 20M). implicit keeps each item among its own K
neighbours, so it gets K + 1 to keep the same K others.

Usage::

    python benchmarks/bench_knn.py                 # quality + ML-100K + 5M-event speed
    python benchmarks/bench_knn.py --no-quality --big
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numba
import scipy.sparse as sp

from _protocol import grid, machine, peer_split, tune_and_test
from recstack.data.splits import Split
from recstack.data.synthetic import make_shop
from recstack.evaluation import evaluate
from recstack.models.knn import ItemKNN, UserKNN

THREADS = 2
ITEM_GRID: dict[str, Sequence[Any]] = {
    "neighbors": [3, 5, 10, 20, 50, 100, 200],
    "alpha": [0.1, 0.2, 0.35, 0.5, 0.65, 0.8],
    "shrink": [0.0, 10.0],
    "weighting": ["none", "bm25", "tfidf"],
}
USER_GRID: dict[str, Sequence[Any]] = {
    "neighbors": [5, 10, 20, 50, 100],
    "alpha": [0.2, 0.35, 0.5, 0.65, 0.8],
    "shrink": [0.0, 10.0],
    "weighting": ["none", "bm25", "tfidf"],
}
#: the peers' test rows (README), NDCG@10: (train-only, refit on train + valid)
PEERS = {
    "implicit ItemKNN-BM25 (K=5, K1=.5, B=1)": (0.0564, 0.0619),
    "RecBole ItemKNN (k=10)": (0.0659, None),
}


def best_of(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Minimum wall time of each function over ``repeats`` interleaved rounds (the least
    disturbed run of each, under the same background load)."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, t in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
    return [min(t) for t in times]


def quality() -> None:
    split = peer_split()
    print("## Quality: ML-100K shared protocol (test NDCG@10 after refit on train + valid)")
    rows = []
    for cls, space in ((ItemKNN, ITEM_GRID), (UserKNN, USER_GRID)):
        print(f"tuning {cls.__name__} over {len(grid(space))} settings ...", flush=True)
        res = tune_and_test(cls, space, split, verbose=False)
        t = res["test"]
        rows.append(
            f"| recstack {cls.__name__} | {res['params']} | {res['valid_ndcg@10']:.4f} | "
            f"{t['hr@10']:.4f} | {t['ndcg@10']:.4f} | {t['hr@20']:.4f} | {t['ndcg@20']:.4f} | "
            f"{res['fit_seconds']:.2f} |"
        )
    print("| model | parameters (chosen on valid) | valid NDCG@10 | HR@10 | NDCG@10 | HR@20 "
          "| NDCG@20 | fit s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    for name, (train_only, refit) in PEERS.items():
        print(f"peer {name}: NDCG@10 {train_only} (train only), refit {refit}")


def speed_on(label: str, matrix: sp.csr_matrix, k: int, repeats: int) -> list[str]:
    """Time the similarity builds on one matrix; returns markdown table rows."""
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

    n_users, n_items = matrix.shape
    print(f"{label}: {n_users} users x {n_items} items, {matrix.nnz} pairs, K={k}", flush=True)
    pairs = [
        (
            "cosine",
            ItemKNN(neighbors=k),
            lambda: CosineRecommender(K=k + 1, num_threads=THREADS),
        ),
        (
            "BM25 (dot)",
            ItemKNN(neighbors=k, similarity="dot", weighting="bm25"),
            lambda: BM25Recommender(K=k + 1, K1=1.2, B=0.75, num_threads=THREADS),
        ),
    ]
    rows = []
    for name, ours, make_peer in pairs:
        ours.build_similarity(matrix)  # compile (numba caches to disk) and warm up
        t_ours, t_peer = best_of(
            [partial(ours.build_similarity, matrix), partial(_fit_peer, make_peer, matrix)],
            repeats,
        )
        print(f"  {name}: recstack {t_ours:.3f} s, implicit {t_peer:.3f} s, "
              f"implicit/recstack {t_peer / t_ours:.2f}x", flush=True)  # fmt: skip
        rows.append(
            f"| {label} | {name} | {k} | {t_ours:.3f} | {t_peer:.3f} | {t_peer / t_ours:.2f}x |"
        )
    return rows


def _fit_peer(make: Callable[[], Any], matrix: sp.csr_matrix) -> None:
    make().fit(matrix, show_progress=False)


def synthetic(n_users: int, n_items: int, n_events: int) -> sp.csr_matrix:
    t0 = time.perf_counter()
    data = make_shop(n_users, n_items, n_events, with_text=False, seed=0)
    print(f"make_shop({n_users}, {n_items}, {n_events}) in {time.perf_counter() - t0:.1f} s")
    return data.matrix


def fit_and_evaluate(split: Split, repeats: int) -> None:
    """recstack's whole fit (with its history store) and a full evaluation (scoring every
    test user), with the tuned defaults."""
    history = split.test_history()
    refit = Split(history, None, split.test)
    for model in (ItemKNN(), UserKNN()):
        (t_fit,) = best_of([partial(model.fit, history)], repeats)
        t0 = time.perf_counter()
        ndcg = evaluate(model, refit, progress=False).metrics["ndcg@10"]
        t_eval = time.perf_counter() - t0
        print(f"  ML-100K {type(model).__name__}() defaults: fit {t_fit:.3f} s, "
              f"evaluate {len(refit.test.active_users())} users {t_eval:.3f} s, "
              f"test NDCG@10 {ndcg:.4f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-quality", action="store_true", help="skip the ML-100K grid")
    parser.add_argument("--big", action="store_true", help="also the ML-20M size set")
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats (min)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Method expects CSR input")
    numba.set_num_threads(THREADS)
    from threadpoolctl import threadpool_limits

    threadpool_limits(THREADS)
    import implicit

    print(machine(), f"| implicit {implicit.__version__} | {THREADS} threads each")
    if not args.no_quality:
        quality()
    print("\n## Speed: item-item similarity build (best of repeats, wall seconds)")
    split = peer_split()
    rows = []
    ml100k = split.test_history().matrix
    for k in (20, 100):
        rows += speed_on("ML-100K train+valid", ml100k, k, args.repeats)
    fit_and_evaluate(split, args.repeats)
    shop = synthetic(100_000, 20_000, 5_000_000)
    rows += speed_on("shop 100k x 20k x 5M", shop, 100, max(1, args.repeats // 2))
    if args.big:
        big = synthetic(138_000, 27_000, 20_000_000)
        rows += speed_on("shop 138k x 27k x 20M", big, 100, 1)
    print("\n| data | similarity | K | recstack s | implicit s | implicit / recstack |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
