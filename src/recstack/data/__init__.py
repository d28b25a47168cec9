"""The data layer: ID maps, interaction logs, readers, preprocessing, splits, synthetic data."""

from recstack.data._columns import Columns
from recstack.data.idmap import IdMap, UnknownPolicy
from recstack.data.interactions import Histories, Interactions
from recstack.data.movielens import load_movielens, read_movielens
from recstack.data.preprocess import dedupe, kcore, to_implicit
from recstack.data.readers import (
    load_dataset,
    read_atomic,
    read_events,
    read_features,
    read_table,
)
from recstack.data.split_io import load_split, save_split
from recstack.data.splits import (
    Split,
    cold_items,
    cold_users,
    global_temporal,
    leave_last_out,
    random_ratio,
    rolling_origins,
    split,
    temporal_ratio,
)
from recstack.data.synthetic import make_shop

__all__ = [
    "Columns",
    "Histories",
    "IdMap",
    "Interactions",
    "Split",
    "UnknownPolicy",
    "cold_items",
    "cold_users",
    "dedupe",
    "global_temporal",
    "kcore",
    "leave_last_out",
    "load_dataset",
    "load_movielens",
    "load_split",
    "make_shop",
    "random_ratio",
    "read_atomic",
    "read_events",
    "read_features",
    "read_movielens",
    "read_table",
    "rolling_origins",
    "save_split",
    "split",
    "temporal_ratio",
    "to_implicit",
]
