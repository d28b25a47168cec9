"""recstack: recommender systems from interaction logs to evaluated, explained, served top-K.

The public API is small and flat; see the README for a tour.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("recstack")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

from recstack.data import Histories, IdMap, Interactions
from recstack.errors import ConfigError, DataError, ModelFitError, NotFittedError, RecstackError

__all__ = [
    "ConfigError",
    "DataError",
    "Histories",
    "IdMap",
    "Interactions",
    "ModelFitError",
    "NotFittedError",
    "RecstackError",
    "__version__",
]
