"""Names of models for the CLI and config files, resolved lazily (a torch model's module is
imported only when that model is asked for)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from recstack.errors import ConfigError

if TYPE_CHECKING:
    from recstack.models.base import Recommender

#: name -> ("module:Class", one-line description)
REGISTRY: dict[str, tuple[str, str]] = {
    "popularity": (
        "recstack.models.baselines:Popularity",
        "most popular items (distinct users per item), optionally time-decayed",
    ),
    "random": ("recstack.models.baselines:Random", "uniformly random ranking (a floor)"),
    "itemknn": ("recstack.models.knn:ItemKNN", "item-based k-NN: cosine/BM25 top-N similarity"),
    "userknn": ("recstack.models.knn:UserKNN", "user-based k-NN over the stored training users"),
    "ease": ("recstack.models.ease:EASE", "EASE closed-form item-item autoencoder (Steck 2019)"),
    "puresvd": ("recstack.models.svd:PureSVD", "PureSVD: truncated randomized SVD, fold-in"),
    "nmf": ("recstack.models.nmf:NMF", "non-negative matrix factorization, coordinate descent"),
    "als": ("recstack.models.als:ALS", "implicit-feedback ALS (Hu et al. 2008), CG solver"),
    "bpr": ("recstack.models.bpr:BPR", "BPR matrix factorization, multi-threaded SGD"),
    "biased-mf": ("recstack.models.biased_mf:BiasedMF", "biased MF for ratings (ALS or SGD)"),
    "als-text": (
        "recstack.models.als_text:ALSText",
        "ALS; items without events get factors mapped from their text embedding (ridge)",
    ),
    "content-knn": (
        "recstack.models.content:ContentKNN",
        "content-based k-NN: cosine of item text embeddings (MiniLM or TF-IDF) to the history",
    ),
    "blend": (
        "recstack.models.blend:Blend",
        "convex blend of sub-models' per-user normalized scores, weights fitted on validation",
    ),
    "sasrec": (
        "recstack.models.neural.sasrec:SASRec",
        "SASRec: causal self-attention over the history (torch)",
    ),
    "sasrec-text": (
        "recstack.models.neural.sasrec_text:SASRecText",
        "SASRec on ID + projected text embeddings: cold items ranked from their text (torch)",
    ),
    "bert4rec": (
        "recstack.models.neural.bert4rec:BERT4Rec",
        "BERT4Rec: bidirectional self-attention, masked-item (cloze) training (torch)",
    ),
    "gru4rec": (
        "recstack.models.neural.gru4rec:GRU4Rec",
        "GRU4Rec: a GRU/LSTM reads the history, next-item softmax (torch)",
    ),
    "caser": (
        "recstack.models.neural.caser:Caser",
        "Caser: horizontal/vertical convolutions over the latest items (torch)",
    ),
    "two-tower": (
        "recstack.models.neural.two_tower:TwoTower",
        "two-tower retrieval: MLP towers over a pooled history and item IDs (torch)",
    ),
}


def model_names() -> list[str]:
    return list(REGISTRY)


def get_model_class(name: str) -> type[Recommender]:
    """The class registered under ``name``; a clear error (with a suggestion) otherwise.

    Only registered classes can be loaded, so a saved model's config cannot name
    arbitrary code to import.
    """
    if not isinstance(name, str) or name not in REGISTRY:
        import difflib

        close = difflib.get_close_matches(str(name), list(REGISTRY), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint} (known: {', '.join(REGISTRY)})")
    module, cls = REGISTRY[name][0].split(":")
    if module.startswith("recstack.models.neural."):
        from recstack.errors import require

        require("torch", "torch")  # a clear install hint instead of an ImportError
    return getattr(importlib.import_module(module), cls)


def create_model(name: str, **params: object) -> Recommender:
    """Instantiate the model ``name`` with ``params`` (unknown parameter names are errors)."""
    klass = get_model_class(name)
    klass.check_param_names(list(params))
    return klass(**params)
