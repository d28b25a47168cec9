"""Ranking: top-K selection with exclusions and candidate filters, nearest-neighbour search
over large catalogs (faiss, the ``ann`` extra), and re-rankers (MMR, DPP, calibration,
category caps). Pure array code over item scores: it imports only :mod:`recstack.data`."""

from recstack.ranking.ann import ItemIndex
from recstack.ranking.calibration import Calibrated, miscalibration
from recstack.ranking.rerank import (
    DPP,
    MMR,
    CategoryCap,
    ItemSimilarity,
    MeanMMR,
    Reranker,
    parse_rerank,
)
from recstack.ranking.topk import topk

__all__ = [
    "DPP",
    "MMR",
    "Calibrated",
    "CategoryCap",
    "ItemIndex",
    "ItemSimilarity",
    "MeanMMR",
    "Reranker",
    "miscalibration",
    "parse_rerank",
    "topk",
]
