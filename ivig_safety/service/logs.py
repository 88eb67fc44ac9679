"""Structured JSON logs, one object a line on stderr: request id, service, hook, verdicts, rule ids, status and
latency. Nothing that identifies a patient goes in: no names, ids, birth dates, weights, order ids or bodies; an
error is logged by its type and a message we wrote, never by an exception's text (which may quote the input)."""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Any

import orjson

LOGGER_NAME = "ivig_safety.service"
#: The only fields a log line may carry (besides time, level and event): a guard against a patient value slipping in.
FIELDS = frozenset({"request_id", "method", "path", "service", "hook", "status", "latency_ms", "verdicts", "rules",
                    "cards", "orders", "not_checked", "reason", "error", "feedback", "workers", "base_url", "audit",
                    "auth", "fetched", "missing"})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None) or {}
        entry.update({k: v for k, v in fields.items() if k in FIELDS})
        return orjson.dumps(entry, default=str).decode()


def get_logger(level: str = "INFO") -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level.upper())
    return logger


def log(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})
