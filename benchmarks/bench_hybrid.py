"""The text-augmented SASRec (``sasrec-text``) against plain SASRec and ContentKNN on ML-100K.

1. Warm items and sparse users: the peers' leave-last-out split with the ML-100K item
   texts (title, year, genres) attached; SASRec and SASRec-text fitted on train with early
   stopping on valid, tested from train + valid. NDCG@10/HR@10 overall and by quartile of
   user activity (the least active quartile is the sparse-user target).
2. Cold items: :func:`recstack.evaluation.cold_item_table` (10% of the items held out
   entirely, seed 0): HR@10/NDCG@10 of the cold items over the whole catalog and among the
   cold items, against ContentKNN, ALS (blind to cold items), ALS-text and the random
   baselines.

Run: ``python benchmarks/bench_hybrid.py [--threads 2] [--part warm|cold|both]`` (about
25 minutes on 2 quiet cores).
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from _protocol import ML100K, machine, peer_split
from bench_text import markdown
from recstack.cli import parse_params
from recstack.data import Interactions, Split, load_dataset
from recstack.evaluation import cold_item_table, evaluate
from recstack.models import ALS, ContentKNN
from recstack.models.als_text import ALSText
from recstack.models.neural.sasrec import SASRec
from recstack.models.neural.sasrec_text import SASRecText

COLUMNS = "title,year,genres"


def with_item_text(split: Split, features: pd.DataFrame) -> Split:
    """``split`` with ``features`` as item features (the item map grown by the items that
    have features but no event; existing indices unchanged)."""
    items = split.train.items.extend(features.index)

    def attach(part: Interactions) -> Interactions:
        return Interactions(
            part.users, items, part.user, part.item, part.value, part.time,
            item_features=features, presorted=True,
        )  # fmt: skip

    valid = None if split.valid is None else attach(split.valid)
    return Split(attach(split.train), valid, attach(split.test), split.info)


def warm(split: Split, params: dict) -> None:
    print("\n## Warm items, leave-last-out (peers' split, item texts attached)\n")
    rows, quart = {}, {}
    for name, model in (
        ("SASRec", SASRec(verbose=False, **params)),
        ("SASRec-text (minilm)", SASRecText(text_columns=COLUMNS, verbose=False, **params)),
    ):
        t0 = time.perf_counter()
        model.fit(split.train, split.valid)
        fit = time.perf_counter() - t0
        res = evaluate(model, split, ks=(10,), progress=False)
        rows[name] = {
            "valid ndcg@10": model.best_valid_ndcg_,
            "best epoch": model.best_epoch_,
            "test ndcg@10": res.metrics["ndcg@10"],
            "test hr@10": res.metrics["hr@10"],
            "fit s": fit,
        }
        seg = res.segments[res.segments["group"] == "activity"]
        quart[name] = seg["ndcg@10"]
        print(f"  {name}: {rows[name]}", flush=True)
    print(markdown(pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")))
    print("\nTest NDCG@10 by activity quartile (q1 = least active users):\n")
    print(markdown(pd.DataFrame(quart).T.rename_axis("model")))


def cold(data: Interactions, params: dict) -> None:
    t0 = time.perf_counter()
    models = {
        "ContentKNN (minilm)": ContentKNN(text_columns=COLUMNS),
        "ALS": ALS(),
        "ALS-text (minilm)": ALSText(text_columns=COLUMNS),
        "SASRec-text (minilm)": SASRecText(text_columns=COLUMNS, verbose=False, **params),
    }
    table = cold_item_table(models, data, fraction=0.1, seed=0, ks=(10,))
    print(
        f"\n## Cold items: {table.attrs['n_cold']} of {data.n_items} held out (seed 0), "
        f"{int(table['n_users'].iloc[0])} users ({time.perf_counter() - t0:.0f}s)\n"
    )
    print(markdown(table.drop(columns="n_users")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--part", choices=("warm", "cold", "both"), default="both")
    parser.add_argument("--param", action="append", default=[], help="KEY=VALUE for both")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    params = parse_params(args.param)  # the CLI's --param KEY=VALUE
    print(machine(), f"| torch {torch.__version__} ({args.threads} threads)", params)
    data = load_dataset(ML100K)
    assert isinstance(data, Interactions) and data.item_features is not None
    if args.part in ("warm", "both"):
        warm(with_item_text(peer_split(), data.item_features), params)
    if args.part in ("cold", "both"):
        cold(data, params)


if __name__ == "__main__":
    main()
