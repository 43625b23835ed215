"""The dev server's log: one line per request, the service's own lines in a compact form.

Deployed, every function has a process of its own and Powertools writes one JSON document per
line, which CloudWatch reads well and a person in a terminal does not. Locally every function
shares one process, one Powertools ``Logger`` and the keys it appends per invocation, so when
requests overlap a line may carry another function's name. Here:

* :class:`~tools.devserver.lambda_host.LambdaHost` records each invocation's Lambda context
  for its thread; the formatter takes the function fields from there, never from the shared
  keys;
* by default a line is ``HH:MM:SS  Function  message  key=value…`` and every request adds
  ``HH:MM:SS  Function  METHOD /path -> status (N ms)``; ``LOG_FORMAT=json`` keeps Powertools'
  JSON (with the right function) and writes the request lines as JSON too;
* everything still goes through the service's scrubber, so no secret reaches the terminal.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import Any, TextIO

from payments.observability import ScrubbingFormatter
from payments.scrub import scrub, scrub_text
from tools.devserver.lambda_host import current_context

LOG_FORMAT_ENV = "LOG_FORMAT"
_FUNCTION_KEYS = (
    "function_name",
    "function_request_id",
    "function_arn",
    "function_memory_size",
    "cold_start",
)
# Keys every Powertools line has; the compact form leaves them out.
_STANDARD_KEYS = frozenset(
    {
        "level",
        "location",
        "message",
        "timestamp",
        "service",
        "sampling_rate",
        "xray_trace_id",
        "exception",
        "exception_name",
        "exception_notes",
        "stack_trace",
        *_FUNCTION_KEYS,
    }
)
SOURCE_WIDTH = 22

_write_lock = threading.Lock()


def json_logs() -> bool:
    """Whether ``LOG_FORMAT=json`` asks for the deployed JSON form."""
    return os.environ.get(LOG_FORMAT_ENV, "").strip().lower() == "json"


def current_function() -> str | None:
    """The function this thread is running, if any."""
    context = current_context()
    return getattr(context, "function_name", None) if context is not None else None


def _function_fields() -> dict[str, Any]:
    context = current_context()
    if context is None:
        return {}
    return {
        "function_name": context.function_name,
        "function_request_id": context.aws_request_id,
        "function_arn": context.invoked_function_arn,
        "function_memory_size": context.memory_limit_in_mb,
    }


def _clock() -> str:
    return time.strftime("%H:%M:%S")


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if text and " " not in text else json.dumps(text)


def compact_line(log: dict[str, Any]) -> str:
    """``HH:MM:SS  Function  [LEVEL] message  key=value…`` for one Powertools log dict."""
    source = str(log.get("function_name") or "-")
    level = str(log.get("level") or "INFO")
    parts = [str(log.get("message", ""))]
    if level != "INFO":
        parts.insert(0, level)
    parts += [
        f"{key}={_value(value)}"
        for key, value in log.items()
        if key not in _STANDARD_KEYS and value is not None
    ]
    line = f"{_clock()}  {source:<{SOURCE_WIDTH}}  {' '.join(parts)}"
    if log.get("exception"):
        line += "\n" + str(log["exception"])
    return line


class DevLogFormatter(ScrubbingFormatter):
    """Powertools' formatter with the right function on each line, compact unless JSON."""

    def __init__(self, *, compact: bool) -> None:
        super().__init__()
        self.compact = compact

    def serialize(self, log: Any) -> str:
        fields = dict(log)
        for key in _FUNCTION_KEYS:
            fields.pop(key, None)
        fields.update(_function_fields())
        if not self.compact:
            return super().serialize(fields)
        return scrub_text(compact_line(scrub(fields)))


class _StandardFormatter(logging.Formatter):
    """The stand-ins' and libraries' own lines (``logging``), in the same layout."""

    def __init__(self, *, compact: bool) -> None:
        super().__init__()
        self.compact = compact

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        if not self.compact:
            return scrub_text(
                json.dumps(
                    {
                        "level": record.levelname,
                        "logger": record.name,
                        "message": message,
                        "timestamp": time.strftime(
                            "%Y-%m-%dT%H:%M:%S%z", time.localtime(record.created)
                        ),
                        "function_name": current_function(),
                    }
                )
            )
        source = current_function() or _short_name(record.name)
        level = "" if record.levelno == logging.INFO else f"{record.levelname} "
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        return scrub_text(f"{clock}  {source:<{SOURCE_WIDTH}}  {level}{message}")


def _short_name(logger_name: str) -> str:
    known = {
        "tools.local.sqs": "local sqs",
        "tools.local.make_receiver": "make.com receiver",
        "tools.local.memberstack": "memberstack",
        "tools.stripe_emulator": "stripe emulator",
        "tools.devserver": "dev server",
    }
    for prefix, name in known.items():
        if logger_name.startswith(prefix):
            return name
    return logger_name


def write_line(line: str, stream: TextIO | None = None) -> None:
    """Write one whole line; a terminal that went away (SIGHUP, a closed pipe) is ignored."""
    target = stream or sys.stdout
    try:
        with _write_lock:
            target.write(line + "\n")
            target.flush()
    except (OSError, ValueError):
        pass


def request_line(
    method: str, path: str, status: int, milliseconds: float, function: str | None
) -> None:
    """Log one request: method, path (never the query: it may carry ids), status, time."""
    if json_logs():
        write_line(
            json.dumps(
                {
                    "level": "INFO",
                    "message": "request",
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": round(milliseconds, 1),
                    "function_name": function,
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
            )
        )
        return
    source = function or "-"
    write_line(
        f"{_clock()}  {source:<{SOURCE_WIDTH}}  {method} {path} -> {status} ({milliseconds:.0f} ms)"
    )


def configure(stream: TextIO | None = None) -> None:
    """Install the dev log on the service's logger and on ``logging``'s root logger."""
    from payments.observability import logger

    compact = not json_logs()
    # Its lines are written by its own handler; the root handler below must not repeat them.
    logging.getLogger(logger.name).propagate = False
    handler = logger.registered_handler
    handler.setFormatter(DevLogFormatter(compact=compact))
    if stream is not None and isinstance(handler, logging.StreamHandler):
        handler.setStream(stream)

    standard = logging.StreamHandler(stream or sys.stdout)
    standard.setFormatter(_StandardFormatter(compact=compact))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(standard)
    root.setLevel(logging.WARNING)
    # The stand-ins' own INFO lines are worth seeing (a batch handled, a payload received).
    logging.getLogger("tools").setLevel(logging.INFO)
    # moto answers every SQS call through werkzeug, which logs each at INFO.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
