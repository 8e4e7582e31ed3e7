"""score: the champion over scheduled flights into gold.delay_predictions."""

from __future__ import annotations

import datetime as dt

from prefect import flow

from flows.tasks import check_date_range, check_job_tables, ray_job, ray_preflight
from ray_jobs.score import TABLE as PREDICTIONS


@flow(name="score", log_prints=True)
def score(start: dt.date | None = None, end: dt.date | None = None) -> str:
    """Score the flights of days `start`..`end` (default: the latest day with features)."""
    check_date_range(start, end)
    ray_preflight()
    args = ["--start", start.isoformat(), "--end", end.isoformat()] if start and end else []
    job_id = ray_job("score", args)
    check_job_tables([PREDICTIONS], "score")  # a table breaking its contract stops the run here
    return job_id
