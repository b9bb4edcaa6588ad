"""Small display filters for the operator's pages."""

from __future__ import annotations

from django import template

from tasks.wording import human_bytes, plural

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
    """Bytes for reading, in decimal units (tasks.wording.human_bytes): "0 B", "18.1 kB", "12.4 MB"."""
    return human_bytes(value)


@register.filter
def counted(count: int | None, noun: str) -> str:
    """{{ n|counted:"message" }} -> "1 message", "2 messages" (tasks.wording.plural)."""
    return plural(count or 0, noun)


@register.filter
def rate(value: float | None) -> str:
    """Messages per second, rounded for reading."""
    if not value:
        return "–"
    return f"{value:,.1f}/s" if value < 10 else f"{value:,.0f}/s"


@register.filter
def get_item(mapping: dict | None, key: str) -> object:
    """{{ counts|get_item:key }}: a dictionary value by a variable key; empty when missing."""
    return (mapping or {}).get(key, "")
