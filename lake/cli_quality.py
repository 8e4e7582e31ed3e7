"""`lakehouse quality [TABLE]`: the latest data-quality results, or a check of the tables now.

`lake.cli` calls `register(app)` while it is being imported, so its helpers are imported inside
the command. Results go to stdout, errors to stderr; the exit status is 1 when a `fail` check
failed in the results shown, so scripts and CI can gate on it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from lake.sql import OutputFormat


def quality(
    table: Annotated[str | None, typer.Argument(help="silver.NAME or gold.NAME, the Ray jobs' gold tables included (default: every table)")] = None,
    run: Annotated[
        bool, typer.Option("--run", help="check the tables' current Delta versions now (and record it) first")
    ] = False,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="table, csv or json")] = OutputFormat.table,
) -> None:
    """Print the latest check results per table from quality.results (Soda contracts in quality/<layer>/<table>.yml)."""
    from pyspark.sql import functions as F

    from lake import io
    from lake.cli import _fail, _settings, _spark, console
    from lake.cli_sql import _print
    from lake.tables import get, registry
    from quality import results, runner
    from quality.contracts import ContractError
    from quality.jobs import job_tables

    known = [*registry(), *job_tables()]
    if table is not None and table not in known:
        try:
            get(table)
        except KeyError as exc:
            raise _fail(f"{exc.args[0]} (or a Ray job's table: {', '.join(sorted(job_tables()))})", 2) from None
    settings = _settings()
    spark = _spark(settings)
    if run:
        for name in [table] if table else known:
            if not io.exists(spark, settings, name):
                console.print(f"{name}: does not exist yet, not checked")
                continue
            version = io.version(spark, settings, name)
            try:
                outcomes = runner.verify(spark, settings, name, io.read(spark, settings, name), "table")
            except ContractError as exc:
                raise _fail(str(exc)) from None
            results.record(spark, settings, outcomes, version)
    shown = results.latest(spark, settings, table)
    if shown is None or shown.isEmpty():
        raise _fail(f"no quality results{' for ' + table if table else ''} yet: run `lakehouse run` or `lakehouse quality --run`")
    columns = ["table", "version", "scope", "check", "action", "outcome", "metric", "checked_at", "run_id"]
    _print(shown.select(*columns), fmt, None)
    if not shown.where((F.col("action") == "fail") & (F.col("outcome") == "failed")).isEmpty():
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `quality` to the `lakehouse` app."""
    app.command("quality")(quality)
