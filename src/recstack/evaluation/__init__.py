"""Evaluation: metric functions (pure numpy), the batched full-ranking evaluator,
paired comparison statistics, and HTML/JSON reports."""

from recstack.evaluation import metrics
from recstack.evaluation.compare import compare_results, paired_test
from recstack.evaluation.evaluator import EvaluationResult, auc, evaluate, item_feature_vectors

__all__ = [
    "EvaluationResult",
    "auc",
    "compare_results",
    "evaluate",
    "item_feature_vectors",
    "metrics",
    "paired_test",
]
