"""EASE, PureSVD and NMF on the shared ML-100K protocol, and EASE's fit against naive numpy.

1. Quality: each model tuned on validation NDCG@10 (:func:`_protocol.tune_and_test`), refit
   on train + valid and tested, beside the peers' refit rows (numpy EASE .0723).
2. Fit time on ML-100K train + valid at the chosen parameters (median of ``--repeats``
   after a warm-up, so numba's compilation is not counted), with the peers' naive numpy
   EASE (``np.linalg.inv`` of the dense float64 Gram matrix, as
   ``../shared/peers/scripts/run_numpy_baselines.py`` does) run in the same process on the
   same data, and the ratio.
3. ``--large N``: EASE on a synthetic catalog of ``N`` items, recstack against naive numpy,
   each in a fresh child process: fit time and peak memory (peak RSS above the RSS before)
   against :func:`recstack.models.ease.ease_memory_gb`.

Both sides use the same threads (``--threads``, default 2): numba's and BLAS's. Times are
wall and CPU seconds (CPU time is steadier on a shared machine; the load average is
printed beside them).

Run: ``python benchmarks/bench_linear.py [--skip-tune] [--large 8000] [--threads 1 2]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from _protocol import machine, peer_split, tune_and_test
from recstack.data import Interactions, make_shop
from recstack.data.splits import Split
from recstack.models.base import Recommender
from recstack.models.ease import EASE, ease_memory_gb
from recstack.models.nmf import NMF
from recstack.models.svd import PureSVD

#: the peers' refit-on-train+valid rows (../shared/peers/README.md)
PEER_ROWS = {
    "numpy EASE (lambda=100)": {
        "hr@10": 0.1485,
        "ndcg@10": 0.0723,
        "hr@20": 0.2280,
        "ndcg@20": 0.0922,
    }
}

GRIDS: dict[str, tuple[type[Recommender], dict[str, list[Any]]]] = {
    "EASE": (
        EASE,
        {
            "l2": [10.0, 25.0, 50.0, 100.0, 200.0, 250.0, 300.0, 500.0, 750.0, 1000.0,
                   1500.0, 2000.0, 3000.0],
            "binary": [True, False],
        },
    ),
    "PureSVD": (
        PureSVD,
        {"factors": [8, 16, 24, 32, 48, 64, 96, 128, 192, 256], "binary": [True, False]},
    ),
    "NMF": (
        NMF,
        {"factors": [16, 32, 64, 128], "l2": [0.0, 2.0, 5.0, 10.0], "l1": [0.0, 0.5, 2.0]},
    ),
}  # fmt: skip


def naive_ease(x: sp.csr_matrix, l2: float) -> np.ndarray:
    """The peers' numpy EASE: dense float64 Gram, ``np.linalg.inv``, column scaling."""
    g = (x.T @ x).toarray().astype(np.float64)
    g[np.diag_indices_from(g)] += l2
    p = np.linalg.inv(g)
    b = -p / np.diag(p)
    b[np.diag_indices_from(b)] = 0.0
    return b


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn()`` over ``repeats`` runs, after a warm-up (JIT
    compilation, caches). CPU time (all threads) is steadier on a shared machine."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.median(cpu))


def load_average() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def binary_matrix(data: Interactions) -> sp.csr_matrix:
    x = data.matrix.copy()
    x.data[:] = 1.0
    return x


def quality(split: Split) -> dict[str, dict[str, Any]]:
    results = {}
    for name, (klass, space) in GRIDS.items():
        print(f"tuning {name} on validation ...", flush=True)
        results[name] = res = tune_and_test(klass, space, split, verbose=False)
        t = res["test"]
        print(
            f"{name}: {res['params']}  valid ndcg@10 {res['valid_ndcg@10']:.4f}  test "
            f"HR@10 {t['hr@10']:.4f} NDCG@10 {t['ndcg@10']:.4f} HR@20 {t['hr@20']:.4f} "
            f"NDCG@20 {t['ndcg@20']:.4f}",
            flush=True,
        )
    return results


def fit_times(split: Split, params: dict[str, dict[str, Any]], repeats: int) -> None:
    """Fit times on ML-100K train + valid, and EASE against the peers' naive numpy EASE."""
    data = split.test_history()
    print(f"threads {numba.get_num_threads()}, {load_average()}", flush=True)
    for name, (klass, _) in GRIDS.items():
        model = klass(**params[name])
        wall, cpu = median_time(lambda m=model: m.fit(data), repeats)  # type: ignore[misc]
        print(f"  fit {model}: wall {wall:.3f} s, cpu {cpu:.3f} s", flush=True)
    ease = EASE(**params["EASE"])
    x = binary_matrix(data) if ease.binary else data.matrix
    ours = median_time(lambda: ease.fit(data), repeats)
    naive = median_time(lambda: naive_ease(x, ease.l2), repeats)
    diff = np.abs(ease.weights_ - naive_ease(x, ease.l2)).max()
    print(
        f"  EASE fit: recstack wall {ours[0]:.3f} s cpu {ours[1]:.3f} s | naive numpy wall "
        f"{naive[0]:.3f} s cpu {naive[1]:.3f} s | ratio recstack/numpy wall "
        f"{ours[0] / naive[0]:.2f} cpu {ours[1] / naive[1]:.2f} (max |B diff| {diff:.1e}; "
        f"{load_average()}; median of {repeats})",
        flush=True,
    )


def _rss_gib(field: str) -> float:
    """``VmRSS`` (current) or ``VmHWM`` (peak) of this process, GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError(f"no {field} in /proc/self/status")


def _large_child(which: str, n_items: int, threads: int, out: Any) -> None:
    """In a fresh process: build the data, then time one EASE fit and its memory peak."""
    numba.set_num_threads(threads)
    with threadpool_limits(threads):
        data = make_shop(n_users=3 * n_items, n_items=n_items, n_events=60 * n_items, seed=0)
        x = binary_matrix(data)
        if which == "recstack":  # compile on a tiny catalog first, outside the timing
            EASE().fit(make_shop(n_users=50, n_items=20, seed=0))
        base = _rss_gib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to now
        t0 = time.perf_counter()
        if which == "recstack":
            EASE(l2=500.0, max_memory_gb=64).fit(data)
        else:
            naive_ease(x, 500.0)
        sec = time.perf_counter() - t0
        peak = _rss_gib("VmHWM")
    out.put((sec, peak - base))


def large(n_items: int, threads: int) -> None:
    ctx = mp.get_context("spawn")
    res = {}
    for which in ("recstack", "numpy"):
        q = ctx.Queue()
        proc = ctx.Process(target=_large_child, args=(which, n_items, threads, q))
        proc.start()
        res[which] = q.get()
        proc.join()
        print(
            f"EASE {n_items:,} items, {threads} threads, {which}: fit {res[which][0]:.2f} s, "
            f"peak memory above the start {res[which][1]:.2f} GiB",
            flush=True,
        )
    (t_ours, m_ours), (t_numpy, m_numpy) = res["recstack"], res["numpy"]
    print(
        f"EASE {n_items:,} items: ratio recstack/numpy time {t_ours / t_numpy:.2f}, "
        f"memory {m_ours / m_numpy:.2f}; estimate (max_memory_gb check) "
        f"{ease_memory_gb(n_items):.2f} GiB; weights alone {4 * n_items**2 / 2**30:.2f} GiB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-tune", action="store_true", help="use the models' defaults")
    parser.add_argument("--large", type=int, default=0, help="items of the synthetic catalog")
    parser.add_argument("--threads", type=int, nargs="+", default=[2], help="one run each")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(machine(), flush=True)
    split = peer_split()
    print("peers (refit on train + valid):", PEER_ROWS, flush=True)
    params: dict[str, dict[str, Any]] = {name: {} for name in GRIDS}
    if not args.skip_tune:
        numba.set_num_threads(max(args.threads))
        with threadpool_limits(max(args.threads)):
            params = {name: r["params"] for name, r in quality(split).items()}
    for threads in args.threads:
        numba.set_num_threads(threads)
        with threadpool_limits(threads):
            fit_times(split, params, args.repeats)
    for threads in args.threads if args.large else []:
        large(args.large, threads)


if __name__ == "__main__":
    main()
