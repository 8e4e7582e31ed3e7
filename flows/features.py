"""features: silver -> gold feature tables on Ray Data, then `feast apply` and the online store."""

from __future__ import annotations

import datetime as dt

from prefect import flow

from flows.tasks import check_date_range, ray_job, ray_preflight


@flow(name="features", log_prints=True)
def features(start: dt.date | None = None, end: dt.date | None = None) -> str:
    """Recompute the feature tables (the days `start`..`end`, or all) as a Ray job; returns its id."""
    check_date_range(start, end)
    ray_preflight()
    args = ["--start", start.isoformat(), "--end", end.isoformat()] if start and end else []
    return ray_job("features", args)
