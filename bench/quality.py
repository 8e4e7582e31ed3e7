"""What the quality gate costs: refining one new day of flights with and without its contract.

Two lakes hold the same first day; each repetition lands the next real day in both and times
`pipeline.refine` of silver.flights: once with the shipped contracts (drop checks compiled to
Spark predicates, Soda on the batch, results appended to `quality.results`), once with a
contracts folder that holds none (the `expect_or_drop` guards only). Ingest is not timed.
`python -m bench.quality [REPETITIONS]` runs it alone.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import lake_settings, median

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lake.settings import Settings

SILVER = "silver.flights"


@dataclass(frozen=True)
class QualityResult:
    repetitions: int
    rows_per_day: int
    bare_median_s: float
    gated_median_s: float
    overhead_s: float
    checks_per_batch: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _prepare(spark: SparkSession, settings: Settings) -> None:
    from lake import pipeline
    from lake.seed import seed
    from lake.source import declared_sources
    from lake.tables import get

    seed(settings, dt.date(2013, 1, 1), dt.date(2013, 1, 1))
    specs = declared_sources(settings)
    for source in ("airlines", "airports", "planes", "flights"):
        pipeline.run_ingest(spark, settings, specs[source])
    pipeline.run(spark, settings, only=[get(t) for t in ("silver.airlines", "silver.airports", "silver.planes", SILVER)])


def run(spark: SparkSession, root: Path, repetitions: int) -> QualityResult:
    from lake import pipeline
    from lake.seed import seed
    from lake.source import declared_sources
    from lake.tables import get

    gated = lake_settings(root / "gated")
    no_contracts = root / "no-contracts"
    no_contracts.mkdir(parents=True, exist_ok=True)
    plain = lake_settings(root / "bare")
    plain = plain.model_copy(update={"quality": plain.quality.model_copy(update={"contracts_dir": str(no_contracts)})})
    for settings in (gated, plain):
        _prepare(spark, settings)
    table = get(SILVER)
    times: dict[str, list[float]] = {"bare": [], "gated": []}
    rows, checks = 0, 0
    for i in range(repetitions):
        day = dt.date(2013, 1, 2) + dt.timedelta(days=i)
        for name, settings in (("bare", plain), ("gated", gated)):
            seed(settings, day, day)
            pipeline.run_ingest(spark, settings, declared_sources(settings)["flights"])
            t0 = time.perf_counter()
            step = pipeline.refine(spark, settings, table)
            times[name].append(time.perf_counter() - t0)
            if name == "gated":
                rows, checks = step.rows_in, len(step.checks)
    bare, gate = median(times["bare"]), median(times["gated"])
    return QualityResult(repetitions, rows, bare, gate, gate - bare, checks)


def markdown(result: dict[str, Any]) -> list[str]:
    return [
        f"Refining one new day of flights ({result['rows_per_day']} rows) into silver, median of "
        f"{result['repetitions']}: {result['bare_median_s']:.2f} s with the guards only, "
        f"{result['gated_median_s']:.2f} s with the contract ({result['checks_per_batch']} checks: drop "
        f"predicates, Soda on the batch, a `quality.results` append), so the gate costs "
        f"{result['overhead_s']:.2f} s per batch.",
    ]


if __name__ == "__main__":
    from bench.common import prepare_environment
    from lake.spark import get_spark, stop_spark

    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        prepare_environment(Path(tmp))
        session = get_spark(lake_settings(Path(tmp) / "default"))
        try:
            print(json.dumps(run(session, Path(tmp), reps).to_json(), indent=2))
        finally:
            stop_spark()
