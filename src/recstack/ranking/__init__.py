"""Ranking: top-K selection with exclusions and candidate filters (re-rankers and vector
indexes join here). Pure array code over item scores: it imports only :mod:`recstack.data`."""

from recstack.ranking.topk import topk

__all__ = ["topk"]
