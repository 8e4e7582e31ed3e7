"""refine: bronze -> silver for every silver table (or the named ones), bad rows to quarantine."""

from __future__ import annotations

from prefect import flow

from flows.tasks import preflight, publish_artifacts, resolve_tables, run_table
from lake.pipeline import StepResult


@flow(name="refine", log_prints=True)
def refine(tables: list[str] | None = None, full_refresh: bool = False) -> list[StepResult]:
    """MERGE what is new in bronze into silver; `full_refresh` rebuilds the tables from bronze."""
    chosen = resolve_tables(tables, "silver")
    preflight()
    results = [run_table(t.fqn, full_refresh) for t in chosen]
    publish_artifacts([], results, "refine")
    return results
