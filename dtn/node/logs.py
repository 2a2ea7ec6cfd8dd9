"""The node's log: one line per significant event, as text (default) or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
import time

LOGGER_NAME = "dtn.node"
CLA_LOGGER_NAME = "dtn.cla"


class JsonLines(logging.Formatter):
    """One JSON object a line: time, level, event, message and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": round(record.created, 6),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", None),
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        return json.dumps(line, separators=(",", ":"))


def setup_logging(fmt: str, level: str) -> logging.Logger:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonLines())
    else:
        formatter = logging.Formatter("%(asctime)s.%(msecs)03dZ %(levelname)s %(message)s",
                                      "%Y-%m-%dT%H:%M:%S")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    for name in CLA_LOGGER_NAME, LOGGER_NAME:  # the convergence layers' shells log too
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    return logger


def log_event(logger: logging.Logger, event: str, message: str, level: int = logging.INFO,
              **fields: object) -> None:
    """Log `message` with a stable `event` name and fields for the JSON format."""
    if logger.isEnabledFor(level):
        logger.log(level, "%s %s", event, message, extra={"event": event, "fields": fields})
