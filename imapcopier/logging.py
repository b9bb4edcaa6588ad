"""Log output for operators and log collectors, and error reports that never show a password.

Structured lines: code logs an event with its fields in `extra`, e.g.

    logger.info("run finished", extra={"event": "run.finished", "run_id": 7, "copied": 120})

and the formatter appends the fields: `key=value` pairs by default, one JSON object per line when
LOG_FORMAT=json (settings.LOGGING picks the formatter).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a log call passed in `extra`, in the order given."""
    return {key: value for key, value in record.__dict__.items() if key not in _STANDARD and not key.startswith("_")}


def _text(value: Any) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


class KeyValueFormatter(logging.Formatter):
    """`2026-01-01 12:00:00,000 INFO runs.orchestrator run finished event=run.finished run_id=7 ...`."""

    def __init__(self, fmt: str | None = None, **kwargs: Any) -> None:
        super().__init__(fmt or "%(asctime)s %(levelname)s %(name)s %(message)s", **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = fields_of(record)
        if not fields:
            return line
        head, newline, rest = line.partition("\n")  # a traceback stays below the line
        return head + " " + " ".join(f"{k}={_text(v)}" for k, v in fields.items()) + newline + rest


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in fields_of(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def formatter(log_format: str = "text") -> logging.Formatter:
    """The formatter for LOG_FORMAT ("text" or "json"); settings.LOGGING builds it with `()`."""
    return JsonFormatter() if log_format == "json" else KeyValueFormatter()
