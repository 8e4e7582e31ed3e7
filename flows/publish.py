"""publish: silver -> gold, incrementally, or for a date range (a backfill)."""

from __future__ import annotations

import datetime as dt

from prefect import flow

from flows.tasks import backfill_table, check_date_range, preflight, publish_artifacts, resolve_tables, run_table
from lake.pipeline import StepResult


@flow(name="publish", log_prints=True)
def publish(
    tables: list[str] | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    full_refresh: bool = False,
) -> list[StepResult]:
    """Recompute gold where silver changed; with `start`/`end`, recompute exactly those days (and months)."""
    check_date_range(start, end)
    chosen = resolve_tables(tables, "gold")
    preflight()
    if start and end:
        results = [backfill_table(t.fqn, start, end) for t in chosen]
    else:
        results = [run_table(t.fqn, full_refresh) for t in chosen]
    publish_artifacts([], results, "publish")
    return results
