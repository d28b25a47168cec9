"""Explanations on ML-100K: faithfulness (the deletion test) and cost, for every model.

Each classic registered model at its defaults, and SASRec with a few epochs, is fit on the
peers' train + valid split; each sampled user gets its top-10 (history excluded) and each
of the 10 items is explained from the user's history. The deletion test (see
:mod:`recstack.explain.faithfulness`) removes the explanation's top history item and
re-scores; the pair is faithful when the item's score drops more than without a random
other history item. Target: at least 90% faithful pairs per model, and at most 2 ms per
user to explain K=10 items (batched; the time of ``explain``, sentences included, beside
the time of ``recommend`` itself).

For the models whose explainer replaces re-scoring by a faster path (BiasedMF, UserKNN,
NMF and the torch sequence models: the same drops, see :mod:`recstack.explain.loo_models`
and :mod:`recstack.explain.loo_knn`; NMF's exact decomposition; BPR: the influence estimate
of :mod:`recstack.explain.influence`), ``generic ms/user`` is the cost of
:func:`recstack.explain.leave_one_out` (re-scoring the catalog per removed item) on the
first ``--generic-users`` users, attribution only, for comparison. A model whose default
explanation is not leave-one-out but which has a fast leave-one-out path (NMF; the torch
sequence models, whose default re-scores only the items of the latest 5 events) gets a
second row, ``method="leave-one-out"``.

Run: ``cd benchmarks && nice python bench_explain.py [--users 300] [--models ease,als]
[--out results/explain.md]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from _protocol import machine, peer_split
from recstack.data import Histories
from recstack.errors import DataError
from recstack.explain import attribute, deletion_test, explain, leave_one_out
from recstack.explain.influence import bpr_influence
from recstack.explain.registry import LEAVE_ONE_OUT, class_paths, explainer_for, loo_explainer
from recstack.models import REGISTRY, create_model, model_names
from recstack.models.base import Recommender

K = 10
#: SASRec trains for a few epochs only: the point is the explanation, not the accuracy
SASREC = {"epochs": 5, "device": "cpu", "verbose": False}


def measure(
    model: Recommender, hist: Histories, method: str = "auto", repeat: int = 1
) -> dict[str, Any]:
    """Faithfulness and ms/user of ``recommend`` and ``explain`` (the fastest of ``repeat``
    timings each: on a shared machine the others measure the neighbours' load)."""
    warm = hist.select([0])  # compile the kernels (numba, top-K) before timing
    explain(model, warm, model.recommend(histories=warm, k=K).index, method=method)
    rec_s, explain_s = [], []
    for _ in range(repeat):
        # BPR remembers its last batch's fold-in (for the explanation that follows a
        # recommendation): a one-user call first, so the timed recommend folds in afresh
        model.recommend(histories=warm, k=K)
        t0 = time.perf_counter()
        recs = model.recommend(histories=hist, k=K)
        t1 = time.perf_counter()
        explain(model, hist, recs.index, scores=recs.scores, method=method)
        t2 = time.perf_counter()
        rec_s.append(t1 - t0)
        explain_s.append(t2 - t1)
    attr = attribute(model, hist, recs.index, method)
    test = deletion_test(model, hist, recs.index, attr, seed=0)
    n = len(hist)
    return {
        "method": attr.method,
        "pairs": test.pairs,
        "faithful": test.rate,
        "explain_ms": 1e3 * min(explain_s) / n,
        "recommend_ms": 1e3 * min(rec_s) / n,
    }


def has_fast_loo(model: Recommender) -> bool:
    """The model has a leave-one-out faster than re-scoring (``LEAVE_ONE_OUT``)."""
    return any(p in LEAVE_ONE_OUT for p in class_paths(model))


def has_fast_path(model: Recommender) -> bool:
    """The model's leave-one-out (or its estimate) does not re-score the catalog."""
    return has_fast_loo(model) or explainer_for(model) is bpr_influence


def generic_ms(model: Recommender, hist: Histories) -> float:
    """ms per user of :func:`leave_one_out` (attribution only, targets precomputed)."""
    targets = model.recommend(histories=hist, k=K).index
    leave_one_out(model, hist.select([0]), targets[:1])
    t0 = time.perf_counter()
    leave_one_out(model, hist, targets)
    return 1e3 * (time.perf_counter() - t0) / len(hist)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=300, help="users sampled (seed 0)")
    parser.add_argument("--generic-users", type=int, default=50, help="users for the generic")
    parser.add_argument("--models", default=None, help="comma-separated (default: all)")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    parser.add_argument("--repeat", type=int, default=1, help="timings per row (fastest kept)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    data = peer_split().test_history()
    rng = np.random.default_rng(0)
    active = data.active_users()
    users = np.sort(rng.choice(active, size=min(args.users, len(active)), replace=False))
    hist = data.histories(users)
    classic = [n for n in model_names() if not REGISTRY[n][0].startswith("recstack.models.neural")]
    names = args.models.split(",") if args.models else [*classic, "sasrec"]
    lines = [
        "# Explanations on ML-100K (peers' train + valid)\n",
        f"- {machine()}",
        f"- {len(users)} users (seed 0), mean history {hist.lengths.mean():.0f} events, K={K}; "
        "torch with one thread; SASRec trained 5 epochs (the explanation's cost does not "
        "depend on the accuracy) and traced (`optimize_inference()`, as the service does).",
        "- explain ms/user: `explain()` of the K recommended items, sentences included; "
        "recommend ms/user: the recommendation call itself (both the fastest of "
        f"{args.repeat} timing{'s' if args.repeat > 1 else ''}); generic ms/user: the "
        f"re-scoring leave-one-out on the first {args.generic_users} users (only for models "
        "with a faster explainer).\n",
        "| model | explanation | pairs | % faithful | explain ms/user | recommend ms/user "
        "| generic ms/user |",
        "|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for name in names:
        try:
            model = create_model(name, **(SASREC if name == "sasrec" else {})).fit(data)
        except DataError as exc:  # e.g. a content model on data without item text
            lines.append(f"| {name} | not fitted: {str(exc).split(';')[0]} | | | | | |")
            print(lines[-1], flush=True)
            continue
        model.optimize_inference()  # as the service does after loading (a traced network)
        methods = ["auto", "attention"] if name in ("sasrec", "bert4rec") else ["auto"]
        if explainer_for(model) is not loo_explainer and has_fast_loo(model):
            methods.append("leave-one-out")  # NMF: its batched leave-one-out too
        for method in methods:
            r = measure(model, hist, method, args.repeat)
            rate = "n/a" if r["pairs"] == 0 else f"{100 * r['faithful']:.1f}"
            generic = ""
            if method == "auto" and has_fast_path(model):
                generic = f"{generic_ms(model, hist.select(slice(0, args.generic_users))):.2f}"
            line = (
                f"| {name} | {r['method']} | {r['pairs']} | {rate} | {r['explain_ms']:.2f} "
                f"| {r['recommend_ms']:.2f} | {generic} |"
            )
            lines.append(line)
            print(line, flush=True)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
