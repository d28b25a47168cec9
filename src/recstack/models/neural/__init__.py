"""Neural models on torch (the ``torch`` extra): sequential recommenders and two-tower.

Import a model through :mod:`recstack.models` (``from recstack.models import SASRec``) or
the registry; this package imports torch, so nothing imports it until a model is asked for.
"""
