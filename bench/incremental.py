"""Incremental cost: one new day through the whole pipeline, on a small and on a large lake.

The design promises that a run processes what is new, not the table: Delta streaming
checkpoints pick the new bronze commits, MERGE is pruned to the partitions the new rows touch,
gold replaces only the changed grain values. If that holds, one new day costs about the same
whether the tables hold one year or ten, so the figure that matters is the ratio large/small.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import landing
from bench.common import StageClock, lake_settings, median, stopwatch
from lake import io, pipeline
from lake.seed import seed

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lake.settings import Settings

NEW_DAY_SHIFT = 1  # a new day is a 2013 day (1 Jan, 2 Jan, ...) moved one year later


@dataclass
class LakeBuild:
    multiple: int
    root: str
    how: str
    flights: int
    seconds: float  # building it: seeding, synthetic years and the first full run

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class NewDay:
    day: str
    seconds: float
    stages: dict[str, float]
    steps: dict[str, float]  # by progress message, e.g. "ingest flights -> bronze.flights"
    flights_ingested: int


@dataclass
class LakeRuns:
    build: LakeBuild
    noop_s: float = 0.0  # a run with nothing new: the fixed cost of looking
    runs: list[NewDay] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return median([r.seconds for r in self.runs])

    def median_stages(self) -> dict[str, float]:
        names = sorted({s for r in self.runs for s in r.stages})
        return {s: median([r.stages.get(s, 0.0) for r in self.runs]) for s in names}

    def median_steps(self) -> dict[str, float]:
        names = sorted({s for r in self.runs for s in r.steps})
        return {s: median([r.steps.get(s, 0.0) for r in self.runs]) for s in names}

    def to_json(self) -> dict[str, Any]:
        return {
            "build": self.build.to_json(),
            "noop_s": self.noop_s,
            "median_s": self.median_s,
            "median_stages": self.median_stages(),
            "median_steps": self.median_steps(),
            "runs": [asdict(r) for r in self.runs],
        }


@dataclass
class IncrementalResult:
    small: LakeRuns
    large: LakeRuns
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.large.median_s / self.small.median_s

    def to_json(self) -> dict[str, Any]:
        return {"small": self.small.to_json(), "large": self.large.to_json(), "ratio": self.ratio, "note": self.note}


def build_multiple(spark: SparkSession, root: Path, multiple: int, end: dt.date | None) -> LakeBuild:
    """Seed 2013, copy it to the `multiple - 1` years before, run the pipeline once over all of it."""
    settings = lake_settings(root, seed_end=end)
    with stopwatch() as t:
        seed(settings)
        days = landing.seeded_days(settings)
        extra = landing.add_years(settings, days, list(range(-(multiple - 1), 0)))
        report = pipeline.run(spark, settings)
    flights = next(r.rows for r in report.ingested if r.table == "bronze.flights")
    copies = f"{multiple - 1} shifted cop{'y' if multiple == 2 else 'ies'}"
    how = f"in-process pipeline.run over the seeded days plus {copies} ({extra.files} extra landing files)"
    return LakeBuild(multiple, str(root), how, flights, t[0])


def reuse_lake(spark: SparkSession, root: Path, how: str, seconds: float) -> LakeBuild:
    """Describe a lake built elsewhere (by the memory benchmark's `lakehouse run`)."""
    flights = io.read(spark, lake_settings(root), "bronze.flights").count()
    return LakeBuild(1, str(root), how, flights, seconds)


def _flights_ingested(report: pipeline.RunReport) -> int:
    return sum(r.rows for r in report.ingested if r.table == "bronze.flights")


def run_new_day(spark: SparkSession, settings: Settings, day: dt.date) -> NewDay:
    """Land `day` (a 2013 day) one year later, then time `pipeline.run` on it."""
    landing.shift_day(settings, day, NEW_DAY_SHIFT)
    clock = StageClock()
    with stopwatch() as t:
        report = pipeline.run(spark, settings, progress=clock)
    new_day = day.replace(year=day.year + NEW_DAY_SHIFT)
    return NewDay(new_day.isoformat(), t[0], clock.by_stage(), clock.by_step(), _flights_ingested(report))


def measure(spark: SparkSession, lakes: list[LakeRuns], repetitions: int) -> None:
    """A no-op run on each lake (so both are equally warm), then new days, alternating lakes.

    Alternating keeps drift (JIT, page cache, a busy neighbour) from favouring one lake.
    """
    settings = {id(lake): lake_settings(Path(lake.build.root)) for lake in lakes}
    for lake in lakes:
        with stopwatch() as t:
            pipeline.run(spark, settings[id(lake)])
        lake.noop_s = t[0]
    for rep in range(repetitions):
        for lake in lakes:
            lake.runs.append(run_new_day(spark, settings[id(lake)], dt.date(2013, 1, rep + 1)))
