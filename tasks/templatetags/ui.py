"""Small display filters for the operator's pages."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def duration(seconds: float | int | None) -> str:
    """Seconds as "45 s", "12 min 5 s", "3 h 04 min"; empty for None."""
    if seconds is None or seconds == "":
        return ""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.filter
def megabytes(value: int | None) -> str:
    """Bytes for reading: "0 B", "18.1 kB", "12.4 MB", "3.02 GB" (decimal units, like mail quotas)."""
    value = value or 0
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if value >= size:
            amount = value / size
            return f"{amount:,.2f} {unit}" if unit == "GB" else f"{amount:,.1f} {unit}"
    return f"{value} B"


@register.filter
def rate(value: float | None) -> str:
    """Messages per second, rounded for reading."""
    if not value:
        return "–"
    return f"{value:,.1f}/s" if value < 10 else f"{value:,.0f}/s"
