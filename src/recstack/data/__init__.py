"""The data layer: ID maps, interaction logs, readers, preprocessing, splits, synthetic data."""

from recstack.data._columns import Columns
from recstack.data.idmap import IdMap, UnknownPolicy
from recstack.data.interactions import Histories, Interactions

__all__ = ["Columns", "Histories", "IdMap", "Interactions", "UnknownPolicy"]
