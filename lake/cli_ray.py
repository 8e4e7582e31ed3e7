"""`lakehouse ray start|stop|status|submit` and `lakehouse models [promote|rollback]`.

`lake.cli` calls `register(app)` while it is being imported, so `lake.cli`'s helpers and the
heavy imports (Ray, deltalake) happen inside the commands.
"""

from __future__ import annotations

import datetime as dt
import json
from enum import Enum
from typing import Annotated

import typer

ray_app = typer.Typer(help="The Ray head (dashboard and Jobs API) and the Ray jobs.", no_args_is_help=True)
models_app = typer.Typer(help="The model registry (ml.models): list, promote, roll back.")


class Job(str, Enum):
    features = "features"
    train = "train"
    score = "score"


@ray_app.command("start")
def start() -> None:
    """Start the local Ray head on 127.0.0.1 (dashboard and Jobs API on ray.dashboard_port)."""
    from lake.cli import _fail, _settings, console, out
    from ray_jobs.cluster import RayJobError, start_head

    settings = _settings()
    with console.status("starting the Ray head..."):
        try:
            state = start_head(settings)
        except RayJobError as exc:
            raise _fail(str(exc)) from None
    out.print(f"Ray head up; dashboard and Jobs API at {state.dashboard}")


@ray_app.command("stop")
def stop() -> None:
    """Stop the head `lakehouse ray start` started (only that one)."""
    from lake.cli import _settings, out
    from ray_jobs.cluster import stop_head

    out.print("Ray head stopped" if stop_head(_settings()) else "no Ray head started by lakehouse is running")


@ray_app.command("status")
def status() -> None:
    """Whether the dashboard answers, and the jobs it knows."""
    from lake.cli import _settings, out
    from ray_jobs.cluster import client
    from ray_jobs.cluster import status as head_status

    settings = _settings()
    state = head_status(settings)
    out.print(f"dashboard {state.dashboard}: {'up' if state.up else 'down'}" + (f" (pid {state.pid})" if state.pid else ""))
    if not state.up:
        raise typer.Exit(1)
    for job in client(settings).list_jobs():
        out.print(f"  {job.submission_id}  {job.status.value:<9}  {job.entrypoint[-60:]}")


@ray_app.command("submit")
def submit(
    job: Annotated[Job, typer.Argument(help="the ray_jobs entry point")],
    args: Annotated[list[str] | None, typer.Argument(help="its arguments, after --")] = None,
) -> None:
    """Submit a job through the Jobs API, stream its log, fail when it fails."""
    from lake.cli import _fail, _settings
    from ray_jobs.cluster import RayJobError, run_job

    try:
        run_job(_settings(), job.value, args or [], on_log=print)
    except RayJobError as exc:
        raise _fail(str(exc)) from None


@models_app.callback(invoke_without_command=True)
def models(ctx: typer.Context) -> None:
    """List registered models, newest first (the champion is marked)."""
    if ctx.invoked_subcommand:
        return
    from rich.table import Table

    from lake.cli import _settings, out
    from ray_jobs.registry import models as registered

    table = Table("version", "champion", "test AUC", "log loss", "Brier", "created", "revision")
    for m in registered(_settings()):
        table.add_row(
            str(m.model_version), "*" if m.champion else "", f"{m.test_auc:.4f}",
            f"{m.metrics.get('log_loss', float('nan')):.4f}", f"{m.metrics.get('brier', float('nan')):.4f}",
            m.created_at.strftime("%Y-%m-%d %H:%M"), m.git_revision[:12],
        )  # fmt: skip
    out.print(table)


@models_app.command("show")
def show(version: Annotated[int, typer.Argument(help="model version")]) -> None:
    """Everything recorded about one model (metrics, params, pinned input versions), as JSON."""
    from dataclasses import asdict

    from lake.cli import _fail, _settings
    from ray_jobs.registry import RegistryError, get

    try:
        record = get(_settings(), version)
    except RegistryError as exc:
        raise _fail(str(exc), 2) from None
    print(json.dumps(asdict(record), indent=2, default=lambda v: v.isoformat() if isinstance(v, dt.datetime) else str(v)))


@models_app.command("promote")
def promote(version: Annotated[int, typer.Argument(help="model version to make champion")]) -> None:
    """Make a model the champion, whatever its metrics."""
    from lake.cli import _fail, _settings, out
    from ray_jobs.registry import RegistryError
    from ray_jobs.registry import promote as do_promote

    try:
        record = do_promote(_settings(), version)
    except RegistryError as exc:
        raise _fail(str(exc), 2) from None
    out.print(f"model {record.model_version} is the champion (test AUC {record.test_auc:.4f})")


@models_app.command("rollback")
def rollback() -> None:
    """Give the champion role back to the previous champion."""
    from lake.cli import _fail, _settings, out
    from ray_jobs.registry import RegistryError
    from ray_jobs.registry import rollback as do_rollback

    try:
        record = do_rollback(_settings())
    except RegistryError as exc:
        raise _fail(str(exc), 2) from None
    out.print(f"rolled back: model {record.model_version} is the champion again")


def register(app: typer.Typer) -> None:
    """Add `ray` and `models` to the `lakehouse` app."""
    app.add_typer(ray_app, name="ray")
    app.add_typer(models_app, name="models")
