"""JSON API routes (DESIGN.md, "JSON API"). Views live in each app's api.py."""

from __future__ import annotations

urlpatterns: list = []
