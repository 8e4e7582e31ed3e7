"""What observing a step costs: a no-op gold step run bare vs inside `lake.observe.step`.

A no-op step (nothing new upstream) is the worst case: its own work is smallest, so the fixed
cost of observing it (input and output version lookups, OpenLineage START/COMPLETE events to
files, JSON log lines, gauges; no Pushgateway) is the largest share. Both variants run the
same streaming check for new silver commits. `python -m bench.observability [REPETITIONS]`
runs it alone.
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

GOLD = "gold.carrier_daily_performance"


@dataclass(frozen=True)
class ObservabilityResult:
    repetitions: int
    bare_median_s: float
    observed_median_s: float
    overhead_ms: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run(spark: SparkSession, root: Path, repetitions: int) -> ObservabilityResult:
    from lake import logs, pipeline
    from lake.seed import seed
    from lake.source import declared_sources
    from lake.tables import get

    settings = lake_settings(root / "lake")
    logs.configure(
        settings.model_copy(
            update={"monitoring": settings.monitoring.model_copy(update={"log_file": str(root / "logs.jsonl")})}
        ),
        flow="bench-observability",
        quiet_console=True,
    )
    seed(settings, dt.date(2013, 1, 1), dt.date(2013, 1, 1))
    specs = declared_sources(settings)
    for source in ("airports", "flights"):
        pipeline.run_ingest(spark, settings, specs[source])
    table = get(GOLD)
    pipeline.run(spark, settings, only=[get("silver.airports"), get("silver.flights"), table])
    bare, observed = [], []
    for _ in range(repetitions):  # interleaved, so a load change hits both variants alike
        t0 = time.perf_counter()
        pipeline.publish(spark, settings, table)
        bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        pipeline.run_table(spark, settings, table)
        observed.append(time.perf_counter() - t0)
    b, o = median(bare), median(observed)
    return ObservabilityResult(repetitions, b, o, (o - b) * 1000)


def markdown(r: dict[str, Any]) -> list[str]:
    return [
        f"A no-op publish of `{GOLD}` (nothing new in silver), bare vs observed, {r['repetitions']} "
        "interleaved repetitions, median wall seconds. Observed = version lookups, OpenLineage events "
        "to files, JSON log lines and gauges (no Pushgateway).",
        "",
        "| | median s |",
        "|---|---|",
        f"| bare step | {r['bare_median_s']:.2f} |",
        f"| observed step | {r['observed_median_s']:.2f} |",
        "",
        f"Observing adds **{r['overhead_ms']:.0f} ms per step**, a fixed cost: a step with work to do "
        "takes seconds to minutes of Spark time.",
    ]


if __name__ == "__main__":
    from bench.common import prepare_environment
    from lake.spark import get_spark, stop_spark

    workdir = Path(tempfile.mkdtemp(prefix="lakehouse-bench-obs-", dir="/tmp"))
    prepare_environment(workdir)
    session = get_spark(lake_settings(workdir / "lake"))
    try:
        result = run(session, workdir, int(sys.argv[1]) if len(sys.argv) > 1 else 5)
    finally:
        stop_spark()
    print(json.dumps(result.to_json()))
