"""The shared ML-100K protocol of ../shared/peers, for benchmark scripts.

Hyper-parameters are chosen on validation NDCG@10 only (fit on train, rank for validation
users from train); the best setting is then refit on train + valid and tested from the
train + valid history — the peers' "refit" rows, the fair comparison.
"""

from __future__ import annotations

import itertools
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from recstack.data.readers import load_dataset
from recstack.data.splits import Split
from recstack.evaluation import evaluate
from recstack.models.base import Recommender

SHARED = Path(__file__).resolve().parents[2] / "shared"
PEER_DIR = SHARED / "peers"
PEER_SPLIT = PEER_DIR / "split"
ML100K = SHARED / "data" / "ml-100k"


def peer_split() -> Split:
    """The peers' leave-last-out split of ML-100K, in one ID space."""
    split = load_dataset(PEER_SPLIT)
    if not isinstance(split, Split):
        raise SystemExit(f"{PEER_SPLIT} is not a split directory")
    return split


def grid(space: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of a parameter grid, as a list of dicts."""
    keys = list(space)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*space.values())]


def tune_and_test(
    make: Callable[..., Recommender],
    space: Mapping[str, Sequence[Any]],
    split: Split,
    *,
    verbose: bool = True,
) -> dict[str, Any]:
    """Grid search on validation NDCG@10, then refit on train + valid and test.

    Returns ``{"params", "valid_ndcg@10", "test": metrics, "fit_seconds"}``.
    """
    best: tuple[float, dict[str, Any]] | None = None
    for params in grid(space):
        model = make(**params).fit(split.train, split.valid)
        score = evaluate(model, split, on="valid", progress=False).metrics["ndcg@10"]
        if verbose:
            print(f"  valid ndcg@10 {score:.4f}  {params}", flush=True)
        if best is None or score > best[0]:
            best = (score, params)
    assert best is not None
    refit = Split(split.test_history(), None, split.test)
    t0 = time.perf_counter()
    model = make(**best[1]).fit(refit.train)
    fit_seconds = time.perf_counter() - t0
    test = evaluate(model, refit, progress=False).metrics
    return {"params": best[1], "valid_ndcg@10": best[0], "test": test, "fit_seconds": fit_seconds}


def machine() -> str:
    """One line: date, CPU, cores, Python and key library versions."""
    import os

    import numba
    import numpy
    import scipy

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{date.today()} | {cpu} | {os.cpu_count()} cores | Python {platform.python_version()} | "
        f"numpy {numpy.__version__} | scipy {scipy.__version__} | numba {numba.__version__}"
    )
