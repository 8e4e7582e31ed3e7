"""features: silver -> gold feature tables on Ray Data, then `feast apply` and the online store."""

from __future__ import annotations

import datetime as dt

from prefect import flow

from flows.tasks import check_date_range, check_job_tables, ray_job, ray_preflight
from ray_jobs.features import FEATURE_TABLES


@flow(name="features", log_prints=True)
def features(start: dt.date | None = None, end: dt.date | None = None) -> str:
    """Recompute the feature tables (the days `start`..`end`, or all) as a Ray job; returns its id."""
    check_date_range(start, end)
    ray_preflight()
    args = ["--start", start.isoformat(), "--end", end.isoformat()] if start and end else []
    job_id = ray_job("features", args)
    check_job_tables([ft.table for ft in FEATURE_TABLES], "features")  # a table breaking its contract stops the run here
    return job_id
