from __future__ import annotations

import pytest

from runs.engine import work


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    """Reconnect backoff in tests: the same code path, shorter sleeps."""
    monkeypatch.setattr(work, "BACKOFF_FIRST", 0.05)
    monkeypatch.setattr(work, "BACKOFF_MAX", 0.2)
