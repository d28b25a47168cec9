"""Text encoders and cold start on ML-100K.

1. Encoding throughput (CPU): the 1,682 ML-100K item texts (title, year, genres) through
   the packaged all-MiniLM-L6-v2, first with an empty embedding cache, then again from the
   cache (a new encoder object, as a second run would have: it does not even load the
   model), and TF-IDF (fit + encode) for scale.
2. The cold-item protocol (:func:`recstack.evaluation.cold_item_table`): 10% of the items
   held out entirely (seed 0), the whole catalog ranked for every user with a held-out item,
   from their train history. HR@10/NDCG@10 of the cold items, the share of top-10 slots
   given to cold items, and the same metrics with the candidates restricted to the cold
   items (``among cold``); two closed-form baselines (random over the catalog, random among the
   cold items).
3. The cold-user protocol (:func:`recstack.evaluation.cold_user_summary`): the models
   fitted on the leave-last-out train part, each test user scored from their last 1, 3 and
   5 events.

Run: ``python benchmarks/bench_text.py`` (about 3 minutes on 2 cores; the torch threads
are capped with ``--threads``).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import pandas as pd

from _protocol import ML100K, machine
from recstack.data import Interactions, leave_last_out, load_dataset
from recstack.evaluation import cold_item_table, cold_user_summary
from recstack.models import EASE, ContentKNN, Popularity
from recstack.models.base import Recommender
from recstack.text import TextEncoder, TfidfEncoder, item_texts

COLUMNS = "title,year,genres"


def markdown(table: pd.DataFrame, digits: int = 4) -> str:
    cols = [str(table.index.name or ""), *map(str, table.columns)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, row in table.iterrows():
        cells = [f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row.tolist()]
        lines.append("| " + " | ".join([str(name), *cells]) + " |")
    return "\n".join(lines)


def throughput(data: Interactions) -> None:
    assert data.item_features is not None
    texts = item_texts(data.item_features, COLUMNS).tolist()
    print(f"\n## Encoding throughput: {len(texts)} ML-100K item texts ({COLUMNS})\n")
    print(f"e.g. {texts[0]!r}\n")
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        TextEncoder(cache_dir=cache, cache=False).load()
        load = time.perf_counter() - t0
        first = TextEncoder(cache_dir=cache, progress=False)
        t0 = time.perf_counter()
        first.encode(texts)
        t_first = time.perf_counter() - t0
        second = TextEncoder(cache_dir=cache, progress=False)
        t0 = time.perf_counter()
        second.encode(texts)
        t_second = time.perf_counter() - t0
    t0 = time.perf_counter()
    TfidfEncoder().fit(texts).encode(texts)
    t_tfidf = time.perf_counter() - t0
    n = len(texts)
    print("| encoder | run | encoded | seconds | items/s |")
    print("|---|---|---|---|---|")
    print(f"| MiniLM (load + import, once per process) | | | {load:.2f} | |")
    print(
        f"| MiniLM | first (empty cache) | {first.n_encoded} | {t_first:.2f} | {n / t_first:,.0f} |"
    )
    print(
        f"| MiniLM | second (cached) | {second.n_encoded} | {t_second:.3f} | {n / t_second:,.0f} |"
    )
    print(f"| TF-IDF | fit + encode | {n} | {t_tfidf:.3f} | {n / t_tfidf:,.0f} |")


def models() -> dict[str, Recommender]:
    return {
        "popularity": Popularity(),
        "ContentKNN (minilm)": ContentKNN(text_columns=COLUMNS),
        "ContentKNN (tfidf)": ContentKNN(encoder="tfidf", text_columns=COLUMNS),
        "ContentKNN (tfidf, no year)": ContentKNN(encoder="tfidf", text_columns="title,genres"),
        "EASE": EASE(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(machine(), f"| torch {torch.__version__} ({args.threads} threads)")
    data = load_dataset(ML100K)
    assert isinstance(data, Interactions)
    throughput(data)

    t0 = time.perf_counter()
    table = cold_item_table(models(), data, fraction=0.1, seed=0, ks=(10,))
    print(
        f"\n## Cold items: {table.attrs['n_cold']} of {data.n_items} items held out "
        f"(fraction 0.1, seed 0), {int(table['n_users'].iloc[0])} users "
        f"({time.perf_counter() - t0:.0f}s)\n"
    )
    print(markdown(table.drop(columns="n_users")))

    t0 = time.perf_counter()
    split = leave_last_out(data)
    fitted = {name: m.fit(split.train, split.valid) for name, m in models().items()}
    users = cold_user_summary(fitted, split, ks=(10,))
    print(
        f"\n## Cold users: leave-last-out, scored from the last n events "
        f"({int(users['n_users'].iloc[0])} users, {time.perf_counter() - t0:.0f}s)\n"
    )
    print(markdown(users.drop(columns="n_users")))


if __name__ == "__main__":
    main()
