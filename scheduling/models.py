from __future__ import annotations

from django.db import models


class Ticker(models.Model):
    """One row: when the scheduler tick last ran, so a page can tell when nothing drives it."""

    last_tick_at = models.DateTimeField(null=True, blank=True)
    last_result = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"last tick {self.last_tick_at or 'never'}"
