"""`lakehouse`: the single entry point for users.

Every command builds settings first, so a bad config fails before any work, naming the key.
Heavy imports (Spark) happen inside commands: `lakehouse --help` stays instant.
"""

from __future__ import annotations

import datetime as dt
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from lake.settings import ConfigError, Settings, load_settings, telemetry_off
from lake.source import SourceError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from rich.progress import Progress

    from flows.platform import PlatformReport
    from lake.pipeline import RunReport

app = typer.Typer(
    help="An open lakehouse on Delta Lake and Ray: ingest, refine, publish, query.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)  # errors never hard-wrapped: paths stay greppable
out = Console()


@app.callback()
def _before_any_command() -> None:
    """An open lakehouse on Delta Lake and Ray: ingest, refine, publish, query."""
    telemetry_off()


def _settings() -> Settings:
    try:
        settings = load_settings()
    except ConfigError as exc:
        console.print(f"[red]configuration error[/red]: {exc}")
        raise typer.Exit(2) from None
    _start_logging(settings)
    return settings


def _start_logging(settings: Settings) -> None:
    """JSON log lines with this command's run id (stderr shows warnings only: it holds the progress bar)."""
    import click

    from lake import logs

    ctx = click.get_current_context(silent=True)
    logs.configure(settings, flow=f"lakehouse {ctx.info_name}" if ctx else "lakehouse", quiet_console=True)


def _spark(settings: Settings) -> SparkSession:
    from lake.spark import SparkSetupError, get_spark

    with console.status("starting Spark with Delta (first run fetches jars from Maven Central)..."):
        try:
            return get_spark(settings)
        except SparkSetupError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(3) from None


def _fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error (user text escaped: `[b]` in a query is not markup) and exit."""
    console.print(f"[red]error[/red]: {escape(message)}")
    return typer.Exit(code)


@app.command()
def seed(
    start: Annotated[dt.datetime | None, typer.Option(help="first day (default: config seed.start_date)", formats=["%Y-%m-%d"])] = None,
    end: Annotated[dt.datetime | None, typer.Option(help="last day (default: config seed.end_date)", formats=["%Y-%m-%d"])] = None,
) -> None:
    """Write nycflights13 into the landing zone as a source system would (daily files, snapshots)."""
    from lake.seed import seed as run_seed

    settings = _settings()
    with console.status("writing landing files..."):
        result = run_seed(settings, start.date() if start else None, end.date() if end else None)
    out.print(
        f"landing zone {settings.landing_root}: {result.files_written} files written "
        f"({result.rows_written} rows), {result.files_present} already there"
    )


@app.command()
def ingest(
    source: Annotated[str | None, typer.Argument(help="a declared source name (see `lakehouse sources`)")] = None,
    spec: Annotated[Path | None, typer.Option("--spec", help="a source YAML declared outside the repo")] = None,
    all_sources: Annotated[bool, typer.Option("--all", help="ingest every declared source")] = False,
) -> None:
    """Ingest new files of a source into its bronze table (files already ingested are skipped)."""
    from lake.pipeline import run_ingest
    from lake.source import declared_sources, find_source, load_spec

    settings = _settings()
    try:
        if spec:
            specs = [load_spec(spec)]
        elif all_sources:
            specs = list(declared_sources(settings).values())
        elif source:
            specs = [find_source(settings, source)]
        else:
            raise _fail("name a SOURCE, or pass --spec FILE.yml or --all", 2)
    except SourceError as exc:
        raise _fail(str(exc), 2) from None
    spark = _spark(settings)
    for one in specs:
        try:
            with console.status(f"ingesting {one.name} -> {one.target}..."):
                r = run_ingest(spark, settings, one)
        except SourceError as exc:
            raise _fail(str(exc), 2) from None
        out.print(
            f"{r.source} -> {r.table}: {r.files_new} new of {r.files_seen} files, {r.rows} rows "
            f"({r.rescued} with rescued data), version {r.version}"
        )


@app.command()
def sources() -> None:
    """List the declared sources."""
    from lake.source import declared_sources

    settings = _settings()
    try:
        specs = declared_sources(settings)
    except SourceError as exc:
        raise _fail(str(exc), 2) from None
    table = RichTable("source", "format", "path", "target", "owner")
    for s in specs.values():
        table.add_row(s.name, s.format, s.glob(settings), s.target, s.owner)
    out.print(table)


class Layer(str, Enum):
    bronze = "bronze"
    silver = "silver"
    gold = "gold"


def _progress_bar() -> Progress:
    """What runs now, steps done of all, time so far: on stderr, so stdout stays for results."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description:<48}"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
    return Progress(*columns, TimeElapsedColumn(), console=console)


def _run_with_progress(settings: Settings, layers: list[str], tables: list[str] | None = None) -> None:
    from lake import pipeline
    from lake import tables as registry

    spark = _spark(settings)
    with _progress_bar() as bar:
        task = bar.add_task("starting", total=None)

        def progress(done: int, total: int, message: str) -> None:
            bar.update(task, completed=done, total=total, description=message)

        try:
            selected = [registry.get(name) for name in tables] if tables else None
        except KeyError as exc:
            raise _fail(str(exc.args[0]), 2) from None
        report = pipeline.run(spark, settings, layers, progress, only=selected)
    _print_report(report)


def _print_report(report: RunReport) -> None:
    from lake.pipeline import verb

    if report.seeded:
        out.print(f"seeded {report.seeded.files_written} landing files ({report.seeded.rows_written} rows)")
    table = RichTable("step", "table", "new input", "rows in", "bad rows", "version", title="run summary")
    table.columns[1].no_wrap = True
    for r in report.ingested:
        table.add_row("ingest", r.table, f"{r.files_new} files", str(r.rows), f"{r.rescued} rescued", str(r.version))
    for s in report.steps:
        version = f"{s.version_before} -> {s.version_after}" if s.changed else str(s.version_after)
        gold = s.table.startswith("gold")
        if s.skipped:
            new = s.skipped
        else:
            new = f"{s.grains_recomputed} recomputed" if gold else f"{s.batches} batches"
        bad = "" if gold else f"{s.rows_quarantined} quarantined"
        table.add_row(verb(s.table), s.table, new, str(s.rows_in), bad, version)
    out.print(table)


@app.command()
def run(
    layers: Annotated[list[Layer] | None, typer.Option("--layer", help="run only these layers (repeatable)")] = None,
    ml: Annotated[bool, typer.Option("--ml/--no-ml", help="features, training and scoring on Ray")] = True,
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="deploy the data and model endpoints on Ray Serve")] = True,
) -> None:
    """Run everything as the Prefect `platform` flow: seed an empty landing zone, ingest, stream,
    silver, gold, features, training, scoring, then serving.

    The run is recorded by the Prefect server on 127.0.0.1:4200 when it is up (see it in the UI),
    else in Prefect's local database. Incremental and idempotent: only new files and changed rows
    are processed, so a second run on the same input changes no table. Without ray.address a
    local Ray head starts (and keeps serving after the run). `--no-ml --no-serve` stops at gold;
    `--layer` runs those layers directly, without Prefect.
    """
    settings = _settings()
    if layers and set(layers) != set(Layer):
        _run_with_progress(settings, [layer.value for layer in layers])
        return
    _run_platform_flow(settings, ml, serve)


def _prefect_api(settings: Settings) -> str | None:
    """PREFECT_API_URL if set, else the local server when it answers, else None (ephemeral)."""
    import os
    import urllib.request

    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    try:
        with urllib.request.urlopen(settings.prefect.local_api_url + "/health", timeout=1):
            return settings.prefect.local_api_url
    except OSError:
        return None


def _run_platform_flow(settings: Settings, ml: bool = True, serve: bool = True) -> None:
    import os

    api = _prefect_api(settings)
    if api:
        os.environ["PREFECT_API_URL"] = api
    # The progress bar tells what runs; Prefect's own INFO lines would tear through it.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # The ephemeral server's default 20 s start-up limit is too tight on a busy 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from flows.platform import PlatformReport, platform, step_count
    from flows.tasks import observing

    total = step_count(settings, ml, serve)
    with _progress_bar() as bar:
        task = bar.add_task("preflight (Prefect, settings, Java, lake, Ray)", total=total)
        begun = 0

        def started(step: str) -> None:  # a step starting means the ones before it are done
            nonlocal begun
            bar.update(task, completed=min(begun, total), description=step)
            begun += 1

        with observing(started):
            state = platform(ml=ml, serve=serve, return_state=True)
        bar.update(task, completed=total, description="done")
    run_id = state.state_details.flow_run_id
    where = (
        f"{api.removesuffix('/api')}/runs/flow-run/{run_id}"
        if api
        else f"flow run {run_id} in Prefect's local database (`prefect server start` shows it)"
    )
    if not state.is_completed():
        raise _fail(f"the platform flow ended {state.name}: {state.message}; see {where}")
    report = state.result()
    assert isinstance(report, PlatformReport)
    _print_report(report.batch)
    _print_platform(settings, report)
    out.print(f"Prefect: {where}")


def _print_platform(settings: Settings, report: PlatformReport) -> None:
    """The stream, the Ray jobs and the model, then where the endpoints answer and how to stop them."""

    def say(line: str) -> None:  # never wrapped: URLs and commands stay whole for copy and paste
        out.print(line, soft_wrap=True)

    s = report.stream
    say(f"stream ({s['source']}): {s['events']} events into {s['bronze']}, {s['quarantined']} quarantined; silver: {s['silver']}")
    if report.dashboard:
        say(f"Ray dashboard: {report.dashboard}" + "".join(f"  {k}: {v}" for k, v in report.ray_jobs.items()))
    if report.model:
        m = report.model
        role = "the champion" if m.champion else "not champion (the current champion's test AUC is higher)"
        say(f"model v{m.model_version}: test AUC {m.test_auc:.4f}, {role}; `lakehouse models` lists them")
    if not report.served:
        return
    say("serving (Ray Serve, keeps running after this command):")
    for app in report.served:
        say(f"  {app.name}: " + "  ".join(u for u in app.urls if not u.endswith("/healthz")))
    stop_head = "" if settings.ray.address else "; stop the local Ray head too: `lakehouse ray stop`"
    say(f"stop serving: `lakehouse serve --stop`{stop_head}")


@app.command()
def refine(
    tables: Annotated[list[str] | None, typer.Argument(help="silver tables, e.g. silver.flights (default: all)")] = None,
) -> None:
    """Bring silver tables up to date with new bronze rows (MERGE by key; bad rows to quarantine)."""
    _run_with_progress(_settings(), ["silver"], tables)


@app.command()
def publish(
    tables: Annotated[list[str] | None, typer.Argument(help="gold tables, e.g. gold.route_monthly (default: all)")] = None,
    start: Annotated[dt.datetime | None, typer.Option(help="backfill: first flight date", formats=["%Y-%m-%d"])] = None,
    end: Annotated[dt.datetime | None, typer.Option(help="backfill: last flight date", formats=["%Y-%m-%d"])] = None,
) -> None:
    """Recompute gold aggregates for the days and months whose silver rows changed.

    With --start/--end, recompute the days (and whole months) in that range instead: a backfill
    after a fix in a transform. Running it twice writes the same rows.
    """
    settings = _settings()
    if start is None and end is None:
        _run_with_progress(settings, ["gold"], tables)
        return
    if start is None or end is None:
        raise _fail("a backfill needs both --start and --end", 2)
    if end < start:
        raise _fail(f"--end {end:%Y-%m-%d} is before --start {start:%Y-%m-%d}", 2)
    from lake import pipeline
    from lake import tables as registry

    try:
        selected = [registry.get(n) for n in tables] if tables else [t for t in registry.run_order() if t.layer == "gold"]
    except KeyError as exc:
        raise _fail(str(exc.args[0]), 2) from None
    if any(t.layer != "gold" for t in selected):
        raise _fail("only gold tables are backfilled by date range", 2)
    spark = _spark(settings)
    steps = []
    for table in selected:
        with console.status(f"backfilling {table.fqn} {start:%Y-%m-%d}..{end:%Y-%m-%d}"):
            steps.append(pipeline.run_backfill(spark, settings, table, start.date(), end.date()))
    _print_report(pipeline.RunReport(steps=steps))


@app.command()
def reset(
    table: Annotated[str, typer.Argument(help="a silver or gold table, e.g. gold.route_monthly")],
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
) -> None:
    """Full refresh: drop a silver/gold table and its progress; the next run rebuilds it from its inputs."""
    from lake import pipeline
    from lake import tables as registry

    try:
        declared = registry.get(table)
    except KeyError as exc:
        raise _fail(str(exc.args[0]), 2) from None
    if not yes and not typer.confirm(f"drop {table} and rebuild it on the next run?"):
        raise typer.Exit(1)
    settings = _settings()
    pipeline.full_refresh(_spark(settings), settings, declared)
    out.print(f"{table} dropped; `lakehouse run` rebuilds it")


def _register_extensions() -> None:
    from lake import cli_orchestrator, cli_sql

    cli_sql.register(app)
    from lake import cli_obs

    cli_obs.register(app)
    cli_orchestrator.register(app)
    from lake import cli_stream

    cli_stream.register(app)
    from lake import cli_serve

    cli_serve.register(app)
    from lake import cli_cluster

    cli_cluster.register(app)
    from lake import cli_quality

    cli_quality.register(app)
    from lake import cli_ray

    cli_ray.register(app)


_register_extensions()


def main() -> None:
    """The `lakehouse` console script (see `lake.process` for why it ends with os._exit)."""
    from lake.process import run_then_exit

    run_then_exit(lambda: app(prog_name="lakehouse"))


if __name__ == "__main__":  # pragma: no cover
    main()
