"""Fixtures for the rewards tests: one verifier pool for the whole session, installed as the default.

Starting a worker costs about a second of CPU (imports and parser warm-up), so the tests
share one pool; the TRL reward functions, which use the process-wide pool, get it too.
A short kill grace keeps the timeout tests quick.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rewards.pool import VerifierPool, set_default_pool

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO / ".." / "shared" / "data"
KILL_GRACE_S = 0.5


@pytest.fixture(scope="session")
def pool() -> VerifierPool:
    shared = VerifierPool(num_workers=2, kill_grace_s=KILL_GRACE_S)
    previous = set_default_pool(shared)
    yield shared
    set_default_pool(previous)
    shared.close()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"no shared benchmark data at {SHARED_DATA}")
    return SHARED_DATA
