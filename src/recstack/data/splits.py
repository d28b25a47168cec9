"""Train/valid/test splits in one ID space."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from recstack.data.interactions import Interactions


@dataclass(frozen=True)
class Split:
    """A split of one log into train, optional valid, and test, sharing ID maps.

    ``info`` records the method, its parameters and what was counted along the way
    (users without enough events, events dropped for leakage, ...), so nothing is silent.
    """

    train: Interactions
    valid: Interactions | None
    test: Interactions
    info: dict[str, Any] = field(default_factory=dict)

    def test_history(self) -> Interactions:
        """What test users are scored from: train + valid (valid events last on ties)."""
        return self.train if self.valid is None else self.train.concat(self.valid)
