"""Explanations on ML-100K: faithfulness (the deletion test) and cost, for every model.

Each classic registered model at its defaults, and SASRec with a few epochs, is fit on the
peers' train + valid split; each sampled user gets its top-10 (history excluded) and each
of the 10 items is explained from the user's history. The deletion test (see
:mod:`recstack.explain.faithfulness`) removes the explanation's top history item and
re-scores; the pair is faithful when the item's score drops more than without a random
other history item. Target: at least 90% faithful pairs per model, and at most 2 ms per
user to explain K=10 items (batched; the time of ``explain``, sentences included, beside
the time of ``recommend`` itself).

Run: ``cd benchmarks && nice python bench_explain.py [--users 300] [--models ease,als]``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from _protocol import machine, peer_split
from recstack.data import Histories
from recstack.explain import attribute, deletion_test, explain
from recstack.models import REGISTRY, create_model, model_names
from recstack.models.base import Recommender

K = 10
#: SASRec trains for a few epochs only: the point is the explanation, not the accuracy
SASREC = {"epochs": 5, "device": "cpu", "verbose": False}


def measure(model: Recommender, hist: Histories, method: str = "auto") -> dict[str, Any]:
    warm = hist.select([0])  # compile the kernels (numba, top-K) before timing
    explain(model, warm, model.recommend(histories=warm, k=K).index, method=method)
    t0 = time.perf_counter()
    recs = model.recommend(histories=hist, k=K)
    t1 = time.perf_counter()
    explain(model, hist, recs.index, scores=recs.scores, method=method)
    t2 = time.perf_counter()
    attr = attribute(model, hist, recs.index, method)
    test = deletion_test(model, hist, recs.index, attr, seed=0)
    n = len(hist)
    return {
        "method": attr.method,
        "pairs": test.pairs,
        "faithful": test.rate,
        "explain_ms": 1e3 * (t2 - t1) / n,
        "recommend_ms": 1e3 * (t1 - t0) / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=300, help="users sampled (seed 0)")
    parser.add_argument("--models", default=None, help="comma-separated (default: all)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    print(machine())
    data = peer_split().test_history()
    rng = np.random.default_rng(0)
    active = data.active_users()
    users = np.sort(rng.choice(active, size=min(args.users, len(active)), replace=False))
    hist = data.histories(users)
    classic = [n for n in model_names() if not REGISTRY[n][0].startswith("recstack.models.neural")]
    names = args.models.split(",") if args.models else [*classic, "sasrec"]
    print(f"{len(users)} users, mean history {hist.lengths.mean():.0f} events, K={K}\n")
    print("| model | explanation | pairs | % faithful | explain ms/user | recommend ms/user |")
    print("|---|---|---|---|---|---|")
    for name in names:
        model = create_model(name, **(SASREC if name == "sasrec" else {})).fit(data)
        methods = ["auto", "attention"] if name in ("sasrec", "bert4rec") else ["auto"]
        for method in methods:
            r = measure(model, hist, method)
            rate = "n/a" if r["pairs"] == 0 else f"{100 * r['faithful']:.1f}"
            print(
                f"| {name} | {r['method']} | {r['pairs']} | {rate} | {r['explain_ms']:.2f} "
                f"| {r['recommend_ms']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
