"""BPR: recstack against implicit's CPU BPR, quality on ML-100K and training speed.

Quality (``--quality``): the shared protocol (tune on validation, refit on train + valid,
test), then the chosen setting over three seeds, beside implicit's refit row.
Speed (``--speed``): epochs per second of both libraries on the same CSR matrix, same
factors, learning rate, regularization, verified negatives and 2 threads, on ML-100K and
on a synthetic shop of 100k users x 20k items x 5M events (``--big``: 138k x 27k x 20M,
the size of ML-20M). Runs alternate between the libraries; the best of ``--repeats`` counts.

    python benchmarks/bench_bpr.py --quality --speed [--big] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# two OpenMP runtimes share this process (implicit's and numba's): idle threads of one must
# sleep, not spin, or they steal the 2 cores from the other (both libraries ran 2-3x slower)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba
import numpy as np

from _protocol import grid, machine, peer_split, tune_and_test
from recstack.data import Histories, Interactions
from recstack.data.splits import Split
from recstack.data.synthetic import make_shop
from recstack.evaluation import evaluate
from recstack.models.bpr import BPR

THREADS = 2
#: implicit 0.7.3's BPR refit on train + valid (../shared/peers/README.md): seed 0, 3-seed mean
PEER_NDCG10 = 0.0680
PEER_NDCG10_MEAN3 = 0.0660
GRID: dict[str, list[Any]] = {
    "learning_rate": [0.03, 0.05],
    "regularization": [0.005, 0.01],
    "iterations": [100, 200],
    "factors": [128],
}


class _Both(BPR):
    """BPR that can also score known users by their trained vectors (for comparison):
    ``_trained = True`` scores a history by its user's row of ``user_factors_``."""

    _trained = False

    def _score(self, histories: Histories) -> np.ndarray:
        if self._trained:
            assert histories.users is not None
            return self.user_factors_[histories.users] @ self.item_factors_.T
        return super()._score(histories)


def quality() -> None:
    split = peer_split()
    print("tuning on validation (grid of", len(grid(GRID)), "settings)")
    result = tune_and_test(lambda **p: BPR(num_threads=1, **p), GRID, split)
    best = result["params"]
    refit = Split(split.test_history(), None, split.test)
    folded, trained = [], []
    for seed in range(3):  # one thread: the seed-0 model is the one tune_and_test tested
        model = _Both(num_threads=1, seed=seed, **best).fit(refit.train)
        folded.append(evaluate(model, refit, progress=False).metrics["ndcg@10"])
        model._trained = True
        trained.append(evaluate(model, refit, progress=False).metrics["ndcg@10"])
    t = result["test"]
    print(f"\nbest {best} valid ndcg@10 {result['valid_ndcg@10']:.4f}")
    print("| model | HR@10 | NDCG@10 | HR@20 | NDCG@20 | NDCG@10, 3 seeds |")
    print("|---|---|---|---|---|---|")
    print(
        f"| recstack BPR (seed 0, 1 thread) | {t['hr@10']:.4f} | {t['ndcg@10']:.4f} | "
        f"{t['hr@20']:.4f} | {t['ndcg@20']:.4f} | {np.mean(folded):.4f} +- {np.std(folded):.4f} |"
    )
    print(f"| implicit BPR (peers) | .1294 | {PEER_NDCG10} | .1930 | .0837 | {PEER_NDCG10_MEAN3} |")
    print(
        f"ratio NDCG@10 recstack / implicit: {t['ndcg@10'] / PEER_NDCG10:.3f} (seed 0), "
        f"{np.mean(folded) / PEER_NDCG10_MEAN3:.3f} (3-seed means); "
        f"refit {result['fit_seconds']:.2f} s"
    )
    print(
        "test NDCG@10 by seed, fold-in (the model's scores) vs the trained user vectors: "
        + ", ".join(f"{a:.4f} vs {b:.4f}" for a, b in zip(folded, trained, strict=True))
    )


def _time_recstack(data: Interactions, iterations: int) -> float:
    model = BPR(factors=64, learning_rate=0.01, regularization=0.01, iterations=iterations,
                verify_negative=True, num_threads=THREADS, seed=0)  # fmt: skip
    t0 = time.perf_counter()
    model.fit(data)
    return time.perf_counter() - t0


def _time_implicit(data: Interactions, iterations: int) -> float:
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    model = BayesianPersonalizedRanking(factors=64, learning_rate=0.01, regularization=0.01,
                                        iterations=iterations, num_threads=THREADS,
                                        verify_negative_samples=True, random_state=0)  # fmt: skip
    matrix = data.matrix  # built once, outside the timing, as implicit is handed it
    t0 = time.perf_counter()
    model.fit(matrix, show_progress=False)
    return time.perf_counter() - t0


def speed(name: str, data: Interactions, iterations: int, repeats: int) -> None:
    data.matrix  # noqa: B018  (cached; neither library pays for building it)
    _time_recstack(data, 1)  # compile (numba caches to disk; the first run ever is slower)
    ours, theirs = [], []
    for _ in range(repeats):
        ours.append(iterations / _time_recstack(data, iterations))
        theirs.append(iterations / _time_implicit(data, iterations))
    a, b = max(ours), max(theirs)
    print(
        f"| {name} | {data.n_users:,} x {data.n_items:,} x {data.matrix.nnz:,} | {iterations} | "
        f"{a:.2f} | {b:.2f} | {a / b:.2f} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", action="store_true", help="ML-100K shared protocol")
    parser.add_argument("--speed", action="store_true", help="epochs per second vs implicit")
    parser.add_argument("--big", action="store_true", help="also 138k x 27k x 20M events")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Method expects CSR input")
    numba.set_num_threads(THREADS)
    import implicit

    print(machine(), f"| implicit {implicit.__version__} | {THREADS} threads")
    if args.quality:
        quality()
    if args.speed:
        print("\n| data | users x items x pairs | epochs | recstack epochs/s | "
              "implicit epochs/s | ratio |")  # fmt: skip
        print("|---|---|---|---|---|---|")
        speed("ML-100K train+valid", peer_split().test_history(), 50, args.repeats)
        shop = make_shop(n_users=100_000, n_items=20_000, n_events=5_000_000, with_text=False)
        speed("make_shop 5M", shop, 5, args.repeats)
        if args.big:
            del shop
            big = make_shop(n_users=138_000, n_items=27_000, n_events=20_000_000,
                            with_text=False)  # fmt: skip
            speed("make_shop 20M", big, 3, args.repeats)


if __name__ == "__main__":
    main()
