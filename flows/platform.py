"""platform: the whole pipeline in order; what `lakehouse run` (and so `make demo`) runs.

preflight -> seed an empty landing zone -> ingest -> stream -> refine -> publish -> features ->
train -> score -> deploy-serving. Each stage is its own flow (a subflow here), so the Prefect UI
shows the same runs as when the stages' deployments run one by one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from prefect import flow

from flows.deploy_serving import deploy_serving
from flows.features import features
from flows.ingest import ingest
from flows.publish import publish
from flows.refine import refine
from flows.score import score
from flows.stream import stream_flow, stream_to_silver
from flows.tasks import check_date_range, preflight, publish_artifacts, ray_head, ray_job_url, seed_if_empty
from flows.train import train
from lake.pipeline import RunReport
from lake.settings import Settings
from lake.source import declared_sources
from lake.tables import run_order
from ray_jobs.registry import ModelRecord
from serve.deploy import AppUrl


@dataclass(frozen=True)
class PlatformReport:
    batch: RunReport  # seed, ingest, silver and gold steps
    stream: dict[str, object]  # the stream stage's summary (events in, quarantined, silver)
    dashboard: str | None  # the Ray dashboard, when the ML or serving stages ran
    ray_jobs: dict[str, str]  # stage -> Ray job id
    model: ModelRecord | None  # what this run's training registered
    served: list[AppUrl]  # the applications deploy-serving brought up, with their URLs


def step_count(settings: Settings, ml: bool, serve: bool) -> int:
    """How many steps a run announces (the CLI's progress bar): seed, ingest, stream, tables, Ray."""
    ray = (ml or serve) and not settings.ray.address  # the local head's start is a step
    return 1 + len(declared_sources(settings)) + 2 + len(run_order()) + ray + 3 * ml + serve


@flow(name="platform", log_prints=True)
def platform(
    start: dt.date | None = None,
    end: dt.date | None = None,
    full_refresh: bool = False,
    ml: bool = True,
    serve: bool = True,
) -> PlatformReport:
    """Every stage in order; `start`/`end` backfill gold; `ml=False` skips features, train and
    score, `serve=False` skips deploy-serving (the batch part alone is then ingest to gold)."""
    check_date_range(start, end)
    preflight(ray=ml or serve, broker=True)
    seeded = seed_if_empty()
    ingested = ingest(seed_empty_landing=False)
    streamed = stream_flow()
    silver = refine(full_refresh=full_refresh)
    if streamed["silver_waiting"]:  # a fresh lake: the events merge once refine has built silver's lookups
        waited = stream_to_silver()
        streamed = {**streamed, "silver": waited or "merged after refine", "silver_waiting": waited is not None}
    gold = publish(start=start, end=end, full_refresh=full_refresh)
    dashboard: str | None = None
    jobs: dict[str, str] = {}
    model: ModelRecord | None = None
    served: list[AppUrl] = []
    if ml or serve:
        dashboard = ray_head()
    if ml:
        jobs["features"] = features()
        trained = train()
        jobs["train"], model = trained.job_id, trained.model
        jobs["score"] = score()
    if serve:
        served = deploy_serving()
    links = [("Ray dashboard", dashboard)] if dashboard else []
    links += [(f"Ray job {stage}", ray_job_url(job)) for stage, job in jobs.items()]
    links += [(f"served {app.name}", url) for app in served for url in app.urls]
    publish_artifacts(ingested, silver + gold, "platform", links)
    return PlatformReport(RunReport(seeded=seeded, ingested=ingested, steps=silver + gold), streamed, dashboard, jobs, model, served)
