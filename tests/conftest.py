"""Shared fixtures: the three tiers of data (tiny hand-checkable, synthetic, ML-100K)."""

from __future__ import annotations

from pathlib import Path

import pytest

try:  # one torch thread per test process: pytest -n 2 already fills the 2 cores, and
    # oversubscribed torch threads spin and slow everything down
    import torch

    torch.set_num_threads(1)
except ImportError:
    pass

#: MovieLens-100K in RecBole atomic format, provided beside the repository (never copied in)
ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"
PEER_SPLIT = Path(__file__).resolve().parents[2] / "shared" / "peers" / "split"


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    if not (ML100K / "ml-100k.inter").is_file():
        pytest.skip(f"MovieLens-100K not found at {ML100K}")
    return ML100K
