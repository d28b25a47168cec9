"""Large-catalog retrieval: ItemIndex (faiss HNSW and IVF) against exact search.

A synthetic catalog of 1M items (d=64, 1,000 clusters, log-normal norms, as trained factors
have) and 1,000 queries drawn like the items. For each index: build time, recall@10
against exact maximum-inner-product search (with each query's 50 "seen" items excluded,
as the service does), and single-query latency (p50/p99 over the queries, one at a time,
as requests arrive), next to the exact search's.

Run: ``python benchmarks/bench_ann.py [--items 1000000] [--threads 2]`` (about 10 minutes
on 2 cores, most of it building the HNSW graph).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp

from _protocol import machine
from recstack.ranking.ann import ItemIndex


def catalog(n: int, d: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, d)).astype(np.float32)
    items = centres[rng.integers(1000, size=n)]
    items += 0.5 * rng.normal(size=(n, d)).astype(np.float32)
    items *= rng.lognormal(0, 0.3, size=(n, 1)).astype(np.float32)
    queries = centres[rng.integers(1000, size=n_queries)]
    queries = queries + 0.5 * rng.normal(size=(n_queries, d)).astype(np.float32)
    return items, queries.astype(np.float32)


def latencies(index: ItemIndex, queries: np.ndarray, exclude: sp.csr_matrix) -> np.ndarray:
    out = np.empty(len(queries))
    for r in range(len(queries)):
        t0 = time.perf_counter()
        index.search(queries[r : r + 1], 10, exclude=exclude[r])
        out[r] = time.perf_counter() - t0
    return out * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import faiss

    faiss.omp_set_num_threads(args.threads)
    print(machine(), f"| faiss {faiss.__version__} ({args.threads} threads)")
    items, queries = catalog(args.items, args.dim, args.queries)
    rng = np.random.default_rng(1)
    seen = rng.integers(args.items, size=(args.queries, 50))
    exclude = sp.csr_matrix(
        (np.ones(seen.size, np.float32), seen.ravel(), np.arange(0, seen.size + 1, 50)),
        shape=(args.queries, args.items),
    )
    exact = ItemIndex(items, kind="exact")
    t0 = time.perf_counter()
    truth, _ = exact.search(queries, 10, exclude=exclude)
    batch_ms = (time.perf_counter() - t0) * 1000 / args.queries
    print(f"\n{args.items:,} items x {args.dim}, {args.queries} queries, 50 excluded each\n")
    print("| index | build s | recall@10 | p50 ms | p99 ms | batched ms/query |")
    print("|---|---|---|---|---|---|")
    lat = latencies(exact, queries[:100], exclude[:100])
    print(
        f"| exact | 0 | 1.0000 | {np.percentile(lat, 50):.2f} | {np.percentile(lat, 99):.2f} "
        f"| {batch_ms:.2f} |",
        flush=True,
    )
    for label, kw in (
        ("hnsw M=32 ef=128", {"kind": "hnsw", "ef_search": 128}),
        ("ivf nprobe=32", {"kind": "ivf", "nprobe": 32}),
        ("ivf nprobe=64", {"kind": "ivf", "nprobe": 64}),
    ):
        t0 = time.perf_counter()
        index = ItemIndex(items, **kw)  # type: ignore[arg-type]
        build = time.perf_counter() - t0
        for ef in (128, 256) if kw["kind"] == "hnsw" else (None,):
            if ef is not None:
                index.ef_search = ef
                label = f"hnsw M=32 ef={ef}"
            t0 = time.perf_counter()
            found, _ = index.search(queries, 10, exclude=exclude)
            batched = (time.perf_counter() - t0) * 1000 / args.queries
            hit = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
            lat = latencies(index, queries, exclude)
            print(
                f"| {label} | {build:.0f} | {hit:.4f} | {np.percentile(lat, 50):.2f} | "
                f"{np.percentile(lat, 99):.2f} | {batched:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
