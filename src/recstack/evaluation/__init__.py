"""Evaluation: metric functions (pure numpy), the batched full-ranking evaluator,
paired comparison statistics, and HTML/JSON reports."""

from recstack.evaluation import metrics
from recstack.evaluation.compare import compare_results, paired_test
from recstack.evaluation.evaluator import (
    EvaluationResult,
    auc,
    evaluate,
    evaluate_rerankers,
    item_feature_vectors,
    rerank_sweep,
)

__all__ = [
    "EvaluationResult",
    "auc",
    "compare_results",
    "evaluate",
    "evaluate_rerankers",
    "item_feature_vectors",
    "metrics",
    "paired_test",
    "rerank_sweep",
]
