"""ALS against implicit's CPU ALS: quality on the shared ML-100K protocol, time per
iteration (ML-100K and an ML-20M-sized synthetic set) and peak memory on the big set.

- ``--quality``: grid search on validation NDCG@10, refit on train + valid, test
  (``_protocol.tune_and_test``); compare with implicit's refit row in the peers' README.
- ``--speed``: seconds per iteration at 64 and 128 factors, recstack and
  ``implicit.cpu.als.AlternatingLeastSquares`` on the same data in the same process, both on
  2 threads (numba threads / ``num_threads=2``; BLAS capped at 1 thread, as implicit
  advises). Per iteration = (fit with ``--iters`` - fit with 1 iteration) / (``--iters`` - 1),
  best of ``--repeat`` rounds in alternating (ABBA) order, so set-up costs (matrix transpose,
  init) cancel and a drift in the machine's load favours neither side.
  implicit gets the same objective: its confidence is its input times its alpha, so it is
  fed ``1 + alpha * r`` with ``alpha=1``.
- ``--big``: also the speed runs on a synthetic set the size of ML-20M (138,493 users,
  26,744 items, 20M distinct events, popularity-skewed), ``--big-iters`` vs 1 iterations.
- ``--memory``: peak RSS (``ru_maxrss``) of a fresh subprocess that builds the 20M set and
  fits ALS at 128 factors (and, for reference, one that fits implicit).

Run: ``python benchmarks/bench_als.py --quality --speed [--big] [--memory] [--repeat 2]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
import numpy as np

from _protocol import machine, peer_split, tune_and_test
from recstack.data import IdMap, Interactions
from recstack.models.als import ALS

#: implicit ALS, refit on train+valid (../shared/peers/README.md)
PEER_REFIT_NDCG10 = 0.0756
GRID: dict[str, list[Any]] = {
    "factors": [64, 128, 192],
    "regularization": [5.0, 10.0, 20.0],
    "alpha": [0.0, 0.1, 0.3, 1.0],
    "iterations": [15],
}
ML20M = {"n_users": 138_493, "n_items": 26_744, "n_events": 20_000_263}


def synthetic(n_users: int, n_items: int, n_events: int, seed: int = 0) -> Interactions:
    """Implicit feedback with log-normal user activity and Zipf-like item popularity:
    ``n_events`` distinct (user, item) pairs (a random subset of draws of at least 5 per user)."""
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 1.0, n_users)
    weight = 1.0 / (np.arange(n_items) + 20.0) ** 0.9
    cdf = np.cumsum(weight / weight.sum())
    draws = float(n_events)
    while True:  # repeated pairs collapse: draw more until there are enough distinct ones
        lengths = np.maximum(5, np.round(activity / activity.sum() * draws)).astype(np.int64)
        user = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
        item = np.minimum(np.searchsorted(cdf, rng.random(len(user))), n_items - 1)
        pair = np.sort(user * n_items + item)  # (np.unique is far slower in numpy 2.4)
        pair = pair[np.concatenate([[True], pair[1:] != pair[:-1]])]
        if len(pair) >= n_events:
            break
        draws *= 1.01 * n_events / len(pair)
    pair = np.sort(rng.choice(pair, n_events, replace=False))
    return Interactions(
        IdMap(np.arange(n_users), "user"),
        IdMap(np.arange(n_items), "item"),
        (pair // n_items).astype(np.int32),
        (pair % n_items).astype(np.int32),
        np.ones(n_events, np.float32),
        np.arange(n_events, dtype=np.float64),
        presorted=True,
    )


def _implicit(factors: int, iterations: int) -> object:
    from implicit.cpu.als import AlternatingLeastSquares

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the BLAS advice: BLAS is capped below
        return AlternatingLeastSquares(
            factors=factors,
            regularization=10.0,
            alpha=1.0,
            iterations=iterations,
            num_threads=2,
            calculate_training_loss=False,
            random_state=0,
        )


def per_iteration(data: Interactions, factors: int, iters: int, repeat: int) -> dict[str, float]:
    """Seconds per iteration of recstack and implicit (best of ``repeat`` interleaved runs)."""
    conf = data.matrix.copy()
    conf.data = 1.0 + 1.0 * conf.data  # = recstack's confidence at alpha=1

    def ours(n: int) -> Callable[[], object]:
        model = ALS(factors=factors, regularization=10.0, alpha=1.0, iterations=n)
        return lambda: model.fit(data)

    def peer(n: int) -> Callable[[], object]:
        return lambda: _implicit(factors, n).fit(conf, show_progress=False)  # type: ignore[attr-defined]

    best: dict[tuple[str, int], float] = {}
    runs = [
        (name, make, n)
        for n in (1, iters)
        for name, make in (("recstack", ours), ("implicit", peer))
    ]
    for r in range(repeat):
        # alternate the order (ABBA), so a drift in the machine's load favours neither side
        for name, make, n in runs if r % 2 == 0 else runs[::-1]:
            t0 = time.perf_counter()
            make(n)()
            t = time.perf_counter() - t0
            best[name, n] = min(best.get((name, n), np.inf), t)
    return {
        name: (best[name, iters] - best[name, 1]) / (iters - 1) for name in ("recstack", "implicit")
    } | {f"{name} fit": best[name, iters] for name in ("recstack", "implicit")}


def speed(data: Interactions, label: str, iters: int, repeat: int) -> None:
    from threadpoolctl import threadpool_limits

    print(f"\n## time per iteration: {label} ({data.n_users:,} x {data.n_items:,}, "
          f"{data.matrix.nnz:,} nonzeros), {iters} vs 1 iterations, best of {repeat}")  # fmt: skip
    print(f"load average before: {os.getloadavg()[0]:.1f} (on {os.cpu_count()} cores)")
    print("| factors | recstack s/iter | implicit s/iter | ratio recstack/implicit | "
          f"fit {iters} iters recstack / implicit s |")  # fmt: skip
    print("|---|---|---|---|---|")
    with threadpool_limits(1, "blas"):
        ALS(factors=8, iterations=1).fit(data.select(np.arange(min(1000, data.n_events))))  # JIT
        for factors in (64, 128):
            t = per_iteration(data, factors, iters, repeat)
            print(
                f"| {factors} | {t['recstack']:.4f} | {t['implicit']:.4f} | "
                f"{t['recstack'] / t['implicit']:.2f} | "
                f"{t['recstack fit']:.2f} / {t['implicit fit']:.2f} |",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def quality() -> None:
    split = peer_split()
    n_grid = int(np.prod([len(v) for v in GRID.values()]))
    print(f"\n## quality: ML-100K shared protocol, grid of {n_grid} settings")
    result = tune_and_test(ALS, GRID, split)
    test = result["test"]
    print(f"best on valid: {result['params']}  valid ndcg@10 {result['valid_ndcg@10']:.4f}")
    print(
        f"test (refit on train+valid): ndcg@10 {test['ndcg@10']:.4f}  hr@10 {test['hr@10']:.4f}  "
        f"ndcg@20 {test['ndcg@20']:.4f}  hr@20 {test['hr@20']:.4f}  "
        f"fit {result['fit_seconds']:.2f}s"
    )
    print(f"implicit ALS refit row ndcg@10 {PEER_REFIT_NDCG10:.4f}: ratio "
          f"{test['ndcg@10'] / PEER_REFIT_NDCG10:.3f}")  # fmt: skip
    defaults = ALS()
    if result["params"] != {k: getattr(defaults, k) for k in result["params"]}:
        print(f"note: ALS defaults {defaults.get_params()} differ from the best setting")


_MEMORY_CHILD = """
import gc, os, resource, sys, time
sys.path.insert(0, {bench!r})
from bench_als import ML20M, synthetic, _implicit
data = synthetic(**ML20M)
data.matrix  # the CSR matrix both libraries fit on
gc.collect()
now = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM (Linux >= 4.0): the fit's own peak, below
t0 = time.perf_counter()
if {lib!r} == "recstack":
    from recstack.models.als import ALS
    ALS(factors=128, iterations=3).fit(data)
else:
    m = data.matrix.copy(); m.data += 1.0
    _implicit(128, 3).fit(m, show_progress=False)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
status = open("/proc/self/status").read().split("VmHWM:")[1].split()
fit_peak = int(status[0]) / 2**20
print(f"{{now:.2f}} {{fit_peak:.2f}} {{peak:.2f}} {{seconds:.1f}}")
"""


def memory() -> None:
    print("\n## peak RSS on the ML-20M-sized set (fresh subprocess: data, then fit, 128 factors)")
    print(
        "| library | RSS with data + matrix GB | peak RSS during fit GB | process ru_maxrss GB "
        "| fit 3 iterations s |"
    )
    print("|---|---|---|---|---|")
    bench = str(Path(__file__).resolve().parent)
    for lib in ("recstack", "implicit"):
        code = _MEMORY_CHILD.format(bench=bench, lib=lib)
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
        print(f"| {lib} | {out[0]} | {out[1]} | {out[2]} | {out[3]} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quality", action="store_true")
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--big", action="store_true", help="speed on the ML-20M-sized set too")
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--iters", type=int, default=21, help="iterations timed on ML-100K")
    ap.add_argument("--big-iters", type=int, default=3, help="iterations timed on the big set")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import implicit

    print(machine())
    print(f"implicit {implicit.__version__}, numba threads {numba.get_num_threads()}")
    if args.quality:
        quality()
    if args.speed:
        speed(peer_split().train, "ML-100K train", args.iters, args.repeat)
    if args.big:
        t0 = time.perf_counter()
        big = synthetic(**ML20M)
        print(f"\nbuilt the synthetic set in {time.perf_counter() - t0:.1f}s")
        speed(big, "synthetic ML-20M size", args.big_iters, args.repeat)
    if args.memory:
        memory()


if __name__ == "__main__":
    main()
