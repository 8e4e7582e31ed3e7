"""platform: the whole batch pipeline in order; what `lakehouse run` shows in the Prefect UI."""

from __future__ import annotations

import datetime as dt

from prefect import flow

from flows.ingest import ingest
from flows.publish import publish
from flows.refine import refine
from flows.tasks import check_date_range, preflight, seed_if_empty
from lake.pipeline import RunReport


@flow(name="platform", log_prints=True)
def platform(start: dt.date | None = None, end: dt.date | None = None, full_refresh: bool = False) -> RunReport:
    """seed (empty landing only) -> ingest -> refine -> publish; `start`/`end` backfill gold."""
    check_date_range(start, end)
    preflight()
    seeded = seed_if_empty()
    ingested = ingest(seed_empty_landing=False)
    steps = refine(full_refresh=full_refresh) + publish(start=start, end=end, full_refresh=full_refresh)
    return RunReport(seeded=seeded, ingested=ingested, steps=steps)
