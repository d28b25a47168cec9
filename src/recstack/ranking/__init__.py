"""Ranking: top-K selection with exclusions and candidate filters, and re-rankers (MMR,
DPP, calibration, category caps). Pure array code over item scores: it imports only
:mod:`recstack.data`."""

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
    "ItemSimilarity",
    "MeanMMR",
    "Reranker",
    "miscalibration",
    "parse_rerank",
    "topk",
]
