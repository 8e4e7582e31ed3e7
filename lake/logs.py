"""Structured logs: one JSON object per line with the run id, flow, table and Delta version.

`configure(settings, flow=...)` is called once per process by the CLI and the flows; it starts
a run (a fresh run id unless one is given, e.g. Prefect's flow run id). Steps wrap their work in
`step(table)` and call `set_version` once they know the version they wrote, so every line logged
meanwhile (ours, Prefect's, py4j's) carries them. Lines go to stderr and, when
`monitoring.log_file` is set, to that file, where Fluent Bit or Vector tail them
(docs/runbook.md#shipping-logs).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lake.settings import Settings, resolve_path

FIELDS = ("run_id", "flow", "table", "delta_version")
_HANDLER_MARK = "_lakehouse_handler"


@dataclass
class _Run:
    run_id: str | None = None
    flow: str | None = None


# The run is process-wide (Prefect tasks and py4j callbacks run on other threads); the table is
# per context, so a step's lines name its own table.
_run = _Run()
_table: ContextVar[str | None] = ContextVar("lakehouse_table", default=None)
_version: ContextVar[int | None] = ContextVar("lakehouse_delta_version", default=None)


def new_run_id() -> str:
    return str(uuid.uuid4())


def start_run(flow: str, run_id: str | None = None) -> str:
    """Name the run every later line, metric push and Delta commit of this process belongs to."""
    _run.run_id, _run.flow = run_id or new_run_id(), flow
    return _run.run_id


def run_id() -> str:
    """The current run id, starting an anonymous run on first use (a library call outside the CLI)."""
    return _run.run_id or start_run(_run.flow or "adhoc")


def flow() -> str | None:
    return _run.flow


@contextmanager
def step(table: str) -> Iterator[None]:
    """Lines logged inside carry `table` (and the version once `set_version` is called)."""
    t, v = _table.set(table), _version.set(None)
    try:
        yield
    finally:
        _version.reset(v)
        _table.reset(t)


def set_version(version: int | None) -> None:
    _version.set(version)


def context() -> dict[str, Any]:
    return {"run_id": _run.run_id, "flow": _run.flow, "table": _table.get(), "delta_version": _version.get()}


class ContextFilter(logging.Filter):
    """Stamps the run context onto every record, whoever logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in context().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({key: getattr(record, key, None) for key in FIELDS})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [run=%(run_id)s table=%(table)s v=%(delta_version)s] %(message)s")


def configure(settings: Settings, flow: str, run_id: str | None = None, quiet_console: bool = False) -> str:
    """Set up logging once for this process and start a run; returns the run id.

    `quiet_console` keeps stderr to warnings (the CLI's progress bar owns the terminal); the log
    file still gets every line. Calling it again replaces our handlers, never others'.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(handler)
        handler.close()
    m = settings.monitoring
    level = logging.getLevelName(m.log_level.upper())
    if not isinstance(level, int):
        raise ValueError(f"monitoring.log_level: unknown level {m.log_level!r} (DEBUG, INFO, WARNING, ERROR)")
    console = logging.StreamHandler()
    console.setFormatter(JsonFormatter() if m.log_format == "json" else TextFormatter())
    handlers: list[logging.Handler] = [console]
    if m.log_file:
        path = Path(resolve_path(m.log_file))
        path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(path, encoding="utf-8")
        file_handler.setFormatter(JsonFormatter())
        handlers.append(file_handler)
    for handler in handlers:
        setattr(handler, _HANDLER_MARK, True)
        handler.addFilter(ContextFilter())
        handler.setLevel(level)
        root.addHandler(handler)
    if quiet_console:
        console.setLevel(max(level, logging.WARNING))
    logging.getLogger("py4j").setLevel(logging.WARNING)  # one INFO line per JVM call otherwise
    root.setLevel(min(root.level or logging.WARNING, level))
    return start_run(flow, run_id)


def ensure(settings: Settings, flow: str, run_id: str | None = None) -> str:
    """Start a run, configuring logging first unless this process already did (the CLI did)."""
    if any(getattr(h, _HANDLER_MARK, False) for h in logging.getLogger().handlers):
        return start_run(flow, run_id)
    return configure(settings, flow, run_id)
