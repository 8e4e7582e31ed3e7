"""What every benchmark shares: an isolated environment, throwaway lakes, timing, versions.

Benchmarks never touch the developer's `.lake/dev`: every lake lives under one temporary work
folder in /tmp, addressed through `LAKEHOUSE_LAKE__ROOT` exactly as the test suite does, and the
profile is the embedded default (`dev`) so the figures are what `make demo` users get.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from lake.settings import Settings, load_settings

PROFILE = "dev"
QUIET = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "SODA_CORE_TELEMETRY_ENABLED": "false",
    "FEAST_USAGE": "False",
    "DO_NOT_TRACK": "1",
}


def prepare_environment(workdir: Path) -> None:
    """Telemetry off, the dev profile, and a default lake inside `workdir` for anything that asks."""
    os.environ.update(QUIET)
    os.environ["LAKEHOUSE_ENV"] = PROFILE
    os.environ["LAKEHOUSE_LAKE__ROOT"] = str(workdir / "default-lake")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    # Ray reads its auth mode once, at its first import; the local heads run with token auth, and
    # whichever section imports Ray first (serving's private head) must not fix it to 'disabled'.
    os.environ.setdefault("RAY_AUTH_MODE", "token")


def lake_environ(root: Path, landing: Path | None = None, seed_end: dt.date | None = None) -> dict[str, str]:
    """The environment of a lake at `root` (what a subprocess gets, and what settings are built from)."""
    environ = {**os.environ, "LAKEHOUSE_LAKE__ROOT": str(root)}
    if landing is not None:
        environ["LAKEHOUSE_LAKE__LANDING"] = str(landing)
    if seed_end is not None:
        environ["LAKEHOUSE_SEED__END_DATE"] = seed_end.isoformat()
    return environ


def lake_settings(root: Path, landing: Path | None = None, seed_end: dt.date | None = None) -> Settings:
    """Settings for a lake at `root`, built the way the platform builds them (config + environment)."""
    return load_settings(PROFILE, lake_environ(root, landing, seed_end))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """`with stopwatch() as t: ...` then `t[0]` holds the elapsed wall seconds."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


@dataclass
class StageClock:
    """A `lake.pipeline.Progress` callback that times each step by its announced message."""

    steps: list[tuple[str, float]] = field(default_factory=list)
    _last: tuple[str, float] | None = None

    def __call__(self, _done: int, _total: int, message: str) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.steps.append((self._last[0], now - self._last[1]))
        self._last = (message, now)

    def by_step(self) -> dict[str, float]:
        return dict(self.steps)

    def by_stage(self) -> dict[str, float]:
        """Seconds per stage: the first word of each message (seeding, ingest, refine, publish)."""
        out: dict[str, float] = {}
        for message, seconds in self.steps:
            stage = message.split(" ", 1)[0]
            out[stage] = out.get(stage, 0.0) + seconds
        return out


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _java() -> str:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False, timeout=30)
    except OSError:
        return "not found"
    lines = (out.stderr or out.stdout).splitlines()
    return lines[0] if lines else "unknown"


def machine() -> dict[str, str | int | float]:
    """Where the figures come from: they mean little without the machine and versions."""
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": psutil.cpu_count() or 0,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "java": _java(),
        "pyspark": _version("pyspark"),
        "delta-spark": _version("delta-spark"),
        "deltalake": _version("deltalake"),
        "pyarrow": _version("pyarrow"),
    }


def spark_settings_summary(settings: Settings) -> Mapping[str, str | int]:
    s = settings.spark
    return {"master": s.master, "driver_memory": s.driver_memory, "shuffle_partitions": s.shuffle_partitions}
