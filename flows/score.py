"""score: the champion over scheduled flights into gold.delay_predictions."""

from __future__ import annotations

import datetime as dt

from prefect import flow

from flows.tasks import check_date_range, ray_job, ray_preflight


@flow(name="score", log_prints=True)
def score(start: dt.date | None = None, end: dt.date | None = None) -> str:
    """Score the flights of days `start`..`end` (default: the latest day with features)."""
    check_date_range(start, end)
    ray_preflight()
    args = ["--start", start.isoformat(), "--end", end.isoformat()] if start and end else []
    return ray_job("score", args)
