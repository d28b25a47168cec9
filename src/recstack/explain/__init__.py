"""Explanations for every model: the history items behind a recommendation, their shares
of its score, and one readable sentence (see :mod:`recstack.explain.core` for which model
gets which explanation, and :mod:`recstack.explain.faithfulness` for how it is checked)."""

from recstack.explain.attribution import Attribution
from recstack.explain.content import content_explainer, shared_tokens, similarity_attribution
from recstack.explain.core import Explanation, attribute, explain
from recstack.explain.faithfulness import DeletionTest, deletion_test
from recstack.explain.loo import leave_one_out
from recstack.explain.registry import Explainer, explainer_for, register
from recstack.explain.text import item_labels

# ContentKNN's score is the cosine of the profile (a sum of history item vectors) with the
# item's vector: each history item's term is its similarity to the item (exact shares)
register("recstack.models.content:ContentKNN", content_explainer("text_vectors_"))

__all__ = [
    "Attribution",
    "DeletionTest",
    "Explainer",
    "Explanation",
    "attribute",
    "content_explainer",
    "deletion_test",
    "explain",
    "explainer_for",
    "item_labels",
    "leave_one_out",
    "register",
    "shared_tokens",
    "similarity_attribution",
]
