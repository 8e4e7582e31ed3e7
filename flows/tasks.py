"""The tasks the flows are made of: small, typed, retried, each a thin call into `lake`.

Spark starts once per process (`lake.spark.get_spark`) and is shared by every task of a run.
Tasks never cache: the tables themselves make reruns cheap and safe (incremental, idempotent).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from prefect import State, Task, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from lake import io, logs, pipeline
from lake.ingest import IngestResult
from lake.pipeline import StepResult
from lake.seed import SeedResult, landing_is_empty, seed
from lake.settings import Settings, get_settings, is_uri
from lake.source import declared_sources
from lake.spark import check_java, get_spark
from lake.tables import Table, get, run_order
from quality.contracts import ContractError
from quality.runner import CheckOutcome, QualityGateError
from ray_jobs.registry import protect_pins

P = ParamSpec("P")
R = TypeVar("R")


def retried(run_name: str) -> Callable[[Callable[P, R]], Task[P, R]]:
    """A task retried with backoff (a busy disk, a lost executor): every step is safe to rerun.

    A refused quality gate or a broken contract fails at once: rerunning cannot change the data.
    """
    return task(
        retries=2,
        retry_delay_seconds=[10, 60],
        cache_policy=NO_CACHE,
        task_run_name=run_name,
        retry_condition_fn=_transient,
    )


def _transient(_task: object, _run: object, state: State[Any]) -> bool:
    return not isinstance(state.data, QualityGateError | ContractError)


_observers: list[Callable[[str], None]] = []


@contextmanager
def observing(callback: Callable[[str], None]) -> Iterator[None]:
    """Call `callback(step)` as each data task starts in this process (the CLI's progress bar)."""
    _observers.append(callback)
    try:
        yield
    finally:
        _observers.remove(callback)


def starting(step: str) -> None:
    """Tell the observers (the CLI's progress bar) that `step` starts."""
    for callback in list(_observers):
        callback(step)


class ParameterError(ValueError):
    """A flow parameter is wrong; raised before any work, naming the parameter."""


def check_date_range(start: dt.date | None, end: dt.date | None) -> None:
    if (start is None) != (end is None):
        raise ParameterError("parameters `start` and `end` go together: give both or neither")
    if start and end and end < start:
        raise ParameterError(f"parameter `end` ({end}) is before `start` ({start})")


def resolve_tables(names: list[str] | None, layer: str) -> list[Table]:
    """Declared tables of `layer` in run order; an unknown or wrong-layer name is refused."""
    if not names:
        return [t for t in run_order() if t.layer == layer]
    chosen = []
    for name in names:
        try:
            table = get(name)
        except KeyError as exc:
            raise ParameterError(f"parameter `tables`: {exc.args[0]}") from None
        if table.layer != layer:
            raise ParameterError(f"parameter `tables`: {name} is a {table.layer} table, this flow runs {layer}")
        chosen.append(table)
    return chosen


class PreflightError(RuntimeError):
    """A service the run needs is missing or unreachable; raised before any work, naming it."""


@task(cache_policy=NO_CACHE)
def preflight(ray: bool = False, broker: bool = False) -> Settings:
    """Fail fast, before any work: config loads, Java is there, the lake is writable, sources parse;
    with `ray`, the Ray cluster answers (or a local head can start); with `broker`, Kafka answers
    when `stream.source` is kafka."""
    settings = get_settings()  # a bad key raises ConfigError naming key and file
    _start_run(settings)
    check_java()
    if not is_uri(settings.lake_root):
        root = Path(settings.lake_root)
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / f".preflight-{uuid.uuid4().hex}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise PreflightError(f"lake.root {root} is not writable: {exc}") from None
    declared_sources(settings)
    if ray:
        _check_ray(settings)
    if broker and settings.stream.source == "kafka":
        from lake import kafka

        if not kafka.is_ready(settings, timeout_s=10):
            raise PreflightError(
                f"stream.source is kafka but no broker answers at {kafka.bootstrap_servers(settings)} "
                "(kafka.bootstrap_servers; `lakehouse kafka start` runs a local one)"
            )
    return settings


def _check_ray(settings: Settings) -> None:
    from ray_jobs.cluster import dashboard_url, is_up, start_problem

    if settings.ray.address:  # a cluster of its own: only checked, never started
        if not is_up(settings):
            raise PreflightError(f"ray.address is {settings.ray.address} but no Ray dashboard answers at {dashboard_url(settings)}")
        return
    problem = start_problem(settings)
    if problem:
        raise PreflightError(f"no Ray head answers at {dashboard_url(settings)} and a local one cannot start: {problem}")


def _start_run(settings: Settings) -> None:
    """Log lines, metrics and Delta commits of this flow carry the top flow run's id."""
    from prefect.runtime import flow_run

    logs.ensure(settings, str(flow_run.flow_name or "flow"), str(flow_run.root_flow_run_id or flow_run.id or "") or None)


@retried("seed-if-empty")
def seed_if_empty() -> SeedResult | None:
    """Seed an empty landing zone; with `stream.source: landing`, also drop the seed's last day
    into the events folder as flight events, so the stream stage has something to stream."""
    starting("seed an empty landing zone")
    settings = get_settings()
    if not landing_is_empty(settings):
        return None
    seeded = seed(settings)
    if settings.stream.source == "landing":
        replay_last_seeded_day(settings)
    return seeded


def replay_last_seeded_day(settings: Settings) -> int:
    """The flights of `seed.end_date`, again, as events (no faults); returns how many.

    They are flights the batch files carry too, so silver and gold stay exactly the batch
    result: the stream's silver step keeps the latest row by sequence, and an event's sequence
    (its scheduled departure, 2013) is older than any batch row's ingestion time.
    """
    from lake import replay
    from lake.stream import load_stream

    day = settings.seed.end_date
    events = replay.flight_events(day, None)
    # Events come in UTC order from `day` on: that day's flights are the leading ones.
    count = int(events["flight_id"].str.startswith(f"{day:%Y%m%d}-").cummin().sum())
    if count:
        replay.replay(settings, load_stream(settings), "landing", start=day, count=count)
    return count


@retried("ingest-{source}")
def ingest_source(source: str) -> IngestResult:
    starting(f"ingest {source}")
    settings = get_settings()
    return pipeline.run_ingest(get_spark(settings), settings, declared_sources(settings)[source])


@retried("run-{table}")
def run_table(table: str, full_refresh: bool = False) -> StepResult:
    starting(f"{pipeline.verb(table)} {table}")
    settings = get_settings()
    spark = get_spark(settings)
    if full_refresh:
        pipeline.full_refresh(spark, settings, get(table))
    return pipeline.run_table(spark, settings, get(table))


@retried("backfill-{table}")
def backfill_table(table: str, start: dt.date, end: dt.date) -> StepResult:
    starting(f"backfill {table}")
    settings = get_settings()
    return pipeline.run_backfill(get_spark(settings), settings, get(table), start, end)


@retried("maintain-{table}")
def maintain_table(table: str, vacuum_retention_hours: int) -> dict[str, object]:
    """Compact the small files streaming leaves behind, then drop files older than the retention."""
    settings = get_settings()
    spark = get_spark(settings)
    before = io.version(spark, settings, table)
    if before is None:
        return {"table": table, "skipped": "does not exist"}
    path = io.path_of(settings, table)
    # Versions a registered model pins stay readable: retention reaches back to the oldest pin.
    keep_hours = protect_pins(spark, settings, table, vacuum_retention_hours)
    with io.user_metadata(spark, settings, table):  # OPTIMIZE's commit names the run too
        compacted = spark.sql(f"OPTIMIZE delta.`{path}`").first()
        spark.sql(f"VACUUM delta.`{path}` RETAIN {keep_hours} HOURS")
    metrics = compacted["metrics"] if compacted else None
    return {
        "table": table,
        "version_before": before,
        "version_after": io.version(spark, settings, table),
        "files_removed": metrics["numFilesRemoved"] if metrics else 0,
        "files_added": metrics["numFilesAdded"] if metrics else 0,
    }


def publish_artifacts(
    ingested: list[IngestResult], steps: list[StepResult], title: str, links: Sequence[tuple[str, str]] = ()
) -> None:
    """What the run wrote, as a keyed table and a markdown summary in the Prefect UI.

    `links` (label, URL) go under the summary: the Ray jobs and the served endpoints of a platform run.
    """
    rows = [
        {"table": r.table, "step": "ingest", "rows": r.rows, "rejected": r.rescued, "version": r.version}
        for r in ingested
    ] + [
        {
            "table": s.table,
            "step": pipeline.verb(s.table),
            "rows": s.rows_in,
            "rejected": s.rows_quarantined,
            "version": s.version_after,
        }
        for s in steps
    ]
    create_table_artifact(rows, key="tables-written", description=f"{title}: rows in and Delta versions per table")
    changed = [r["table"] for r in rows if r["rows"]]
    lines = [
        f"# {title}",
        "",
        f"- tables with new data: {', '.join(map(str, changed)) or 'none (nothing new arrived)'}",
        f"- rows rejected (rescued in bronze or quarantined in silver): {sum(int(str(r['rejected'])) for r in rows)}",
        "- query them: `lakehouse sql \"SELECT * FROM gold.carrier_daily_performance LIMIT 10\"`",
        f"- lake: `{get_settings().lake_root}` (profile `{os.environ.get('LAKEHOUSE_ENV', 'dev')}`)",
    ]
    if links:
        lines += ["", "## Links", "", *(f"- {label}: [{url}]({url})" for label, url in links)]
    create_markdown_artifact("\n".join(lines), key="run-summary", description=title)
    checks = [c for s in steps for c in s.checks]
    if checks:
        quality_artifact(checks, title)


def quality_artifact(checks: list[CheckOutcome], title: str) -> None:
    """The `quality-results` table artifact: one row per check outcome."""
    rows = [{"table": c.table, "scope": c.scope, "check": c.check, "action": c.action, "outcome": c.outcome,
             "metric": c.metric} for c in checks]  # fmt: skip
    create_table_artifact(rows, key="quality-results", description=f"{title}: data-quality checks (quality.results)")


@task(cache_policy=NO_CACHE)
def ray_preflight() -> Settings:
    """Fail fast when no Ray head answers (start one with `lakehouse ray start`, or set ray.address)."""
    from ray_jobs.cluster import RayJobError, dashboard_url, is_up

    settings = get_settings()
    _start_run(settings)  # this stage's log lines name its flow (a subflow of platform, too)
    if not is_up(settings):
        raise RayJobError(f"no Ray dashboard at {dashboard_url(settings)}: run `lakehouse ray start` first")
    return settings


@task(cache_policy=NO_CACHE, task_run_name="ray-head")
def ray_head() -> str:
    """The Ray cluster of the ML stages and Serve; returns its dashboard URL.

    With `ray.address` set it is only checked. Unset, the local head starts unless one answers
    (what `lakehouse ray start` does), and stays up after the run: the served apps live on it.
    """
    from ray_jobs.cluster import RayJobError, dashboard_url, is_up, start_head

    settings = get_settings()
    if settings.ray.address:
        if not is_up(settings):
            raise RayJobError(f"ray.address is {settings.ray.address} but no Ray dashboard answers at {dashboard_url(settings)}")
        return dashboard_url(settings)
    starting("start the local Ray head")
    return start_head(settings).dashboard


@task(cache_policy=NO_CACHE, task_run_name="ray-job-{module}")
def ray_job(module: str, args: list[str]) -> str:
    """Submit `ray_jobs.<module>` through the Jobs API, stream its log here, fail when it fails."""
    from ray_jobs.cluster import run_job

    starting(f"Ray job: {module}")
    return run_job(get_settings(), module, args, on_log=print)


@task(cache_policy=NO_CACHE)
def check_job_tables(tables: list[str], title: str) -> None:
    """The contracts of what a Ray job just wrote (quality/gold); a failed `fail` check stops the flow."""
    from quality import jobs

    settings = get_settings()
    quality_artifact(jobs.check(get_spark(settings), settings, tables), title)


def ray_job_url(job_id: str) -> str:
    """The job's page in the Ray dashboard."""
    from ray_jobs.cluster import dashboard_url

    return f"{dashboard_url(get_settings())}/#/jobs/{job_id}"
