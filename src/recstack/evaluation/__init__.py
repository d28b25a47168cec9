"""Evaluation: metric functions (pure numpy), the batched full-ranking evaluator,
paired comparison statistics, cold-start protocols, and HTML/JSON reports."""

from recstack.evaluation import metrics
from recstack.evaluation.coldstart import (
    cold_item_table,
    cold_user_summary,
    cold_user_table,
    random_among_cold,
)
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
    "cold_item_table",
    "cold_user_summary",
    "cold_user_table",
    "compare_results",
    "evaluate",
    "evaluate_rerankers",
    "item_feature_vectors",
    "metrics",
    "paired_test",
    "random_among_cold",
    "rerank_sweep",
]
