"""Contracts of the gold tables that Ray jobs write (features, predictions), checked after the job.

The jobs write through delta-rs in one commit, without Spark; their flows then check the version
just written with the same Soda contracts and record it in `quality.results`. A failed `fail`
check stops the flow there, so training never takes, and serving never loads, a table that
breaks its contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lake.settings import Settings
    from quality.runner import CheckOutcome


def job_tables() -> dict[str, tuple[str, ...]]:
    """Each job-written gold table and its key, from the jobs' own declarations."""
    from ray_jobs.features import FEATURE_TABLES, HISTORY_TABLES
    from ray_jobs.score import TABLE as PREDICTIONS

    keys = {ft.table: (ft.entity, "feature_date") if ft in HISTORY_TABLES else (ft.entity,) for ft in FEATURE_TABLES}
    return {**keys, PREDICTIONS: ("flight_id",)}


def check(spark: SparkSession, settings: Settings, tables: list[str]) -> list[CheckOutcome]:
    """Check the current version of each table, record the results, raise on a failed `fail` check."""
    from lake import io
    from quality import results, runner

    known = job_tables()
    outcomes: list[CheckOutcome] = []
    for table in tables:
        if table not in known:
            raise KeyError(f"{table} is not written by a Ray job; known: {', '.join(sorted(known))}")
        if not io.exists(spark, settings, table):
            raise runner.QualityGateError(table, [], f"checking {table}: the job wrote no table")
        version = io.version(spark, settings, table)
        checked = runner.verify(spark, settings, table, io.read(spark, settings, table), f"version {version}")
        results.record(spark, settings, checked, version)
        runner.gate(table, checked, f"using version {version}")
        outcomes += checked
    return outcomes
