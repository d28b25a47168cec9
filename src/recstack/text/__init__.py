"""Item text: columns assembled into one text per item, and encoders that embed texts.

Layer: after :mod:`recstack.data` (it reads feature tables), before the models that use
text (:mod:`recstack.models.content`). sentence-transformers and scikit-learn are imported
only when an encoder needs them (the ``text`` extra).
"""

from recstack.text.cache import EmbeddingCache, default_cache_dir, text_digests
from recstack.text.columns import (
    COLUMN_ROLES,
    default_text_columns,
    item_texts,
    parse_columns,
    resolve_columns,
)
from recstack.text.embed import ItemEmbeddings, item_embeddings
from recstack.text.encoders import (
    Encoder,
    TextEncoder,
    TfidfEncoder,
    make_encoder,
    minilm_path,
)

__all__ = [
    "COLUMN_ROLES",
    "EmbeddingCache",
    "Encoder",
    "ItemEmbeddings",
    "TextEncoder",
    "TfidfEncoder",
    "default_cache_dir",
    "default_text_columns",
    "item_embeddings",
    "item_texts",
    "make_encoder",
    "minilm_path",
    "parse_columns",
    "resolve_columns",
    "text_digests",
]
