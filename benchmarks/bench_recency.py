"""History recency (``half_life``) for EASE and ItemKNN on the shared ML-100K protocol.

The leave-last-out protocol asks for the *next* item, so the latest history items say the
most. ``half_life`` weighs the ``p``-th last history item by ``0.5 ** (p / half_life)`` at
scoring time (the learned weights are unchanged). Grid on validation NDCG@10 (``None`` is in
the grid, so the order-free model competes), refit on train + valid, test.

Run: ``cd benchmarks && python bench_recency.py``.
"""

from __future__ import annotations

from _protocol import machine, peer_split, tune_and_test
from recstack.models.ease import EASE
from recstack.models.knn import ItemKNN

HALF_LIVES = [None, 1.0, 2.0, 4.0, 8.0, 16.0]
GRIDS = {
    "EASE": (EASE, {"l2": [100.0, 300.0, 500.0, 1000.0, 2000.0], "half_life": HALF_LIVES}),
    "ItemKNN": (
        ItemKNN,
        {
            "neighbors": [5, 10, 20, 50, 100],
            "alpha": [0.2, 0.5],
            "weighting": ["bm25", "none"],
            "half_life": HALF_LIVES,
        },
    ),
}


def main() -> None:
    print(machine())
    split = peer_split()
    print("| model | best parameters (valid) | valid NDCG@10 | HR@10 | NDCG@10 | HR@20 | NDCG@20 |")
    print("|---|---|---|---|---|---|---|")
    for label, (cls, space) in GRIDS.items():
        r = tune_and_test(cls, space, split, verbose=False)
        t = r["test"]
        print(
            f"| {label} | {r['params']} | {r['valid_ndcg@10']:.4f} | {t['hr@10']:.4f} "
            f"| {t['ndcg@10']:.4f} | {t['hr@20']:.4f} | {t['ndcg@20']:.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
