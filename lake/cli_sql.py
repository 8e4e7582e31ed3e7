"""The `lakehouse` SQL commands: `sql`, `history`, `tables`, `sql-server`.

`lake.cli` calls `register(app)` while it is being imported, so the helpers of `lake.cli` are
imported inside the commands, never at the top of this module. Results go to stdout (pipeable:
`lakehouse sql ... --format csv > out.csv`), status and errors to stderr.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from lake.sql import OutputFormat

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

_FORMAT = typer.Option("--format", "-f", help="table (for people), csv (with header) or json (one object per line)")
_LIMIT = typer.Option("--limit", "-n", min=1, help="print at most N rows (default: all; a table shows 1000)")


def _print(df: DataFrame, fmt: OutputFormat, limit: int | None) -> None:
    from lake.cli import _fail
    from lake.sql import error_message, query_errors, render

    try:
        text = render(df, fmt.value, limit)
    except query_errors() as exc:  # runtime errors (bad casts, missing files) surface on collect
        raise _fail(error_message(exc)) from None
    sys.stdout.write(text)
    sys.stdout.flush()


def sql(
    query: Annotated[
        str | None,
        typer.Argument(help="SQL to run (statements separated by ;), - to read it from stdin; omit for the shell"),
    ] = None,
    fmt: Annotated[OutputFormat, _FORMAT] = OutputFormat.table,
    limit: Annotated[int | None, _LIMIT] = None,
) -> None:
    """Query the lake with Spark SQL (bronze.*, silver.*, gold.*); without QUERY, open the interactive shell.

    Time travel: ... FROM gold.t VERSION AS OF 3 (see `lakehouse history gold.t`) or TIMESTAMP AS OF '2013-06-01'.
    """
    from lake.cli import _fail, _settings, _spark
    from lake.sql import error_message, query_errors, quiet_error_logs, run_query, shell, split_statements

    if query == "-":
        query = sys.stdin.read()
    settings = _settings()
    if query is not None:
        statements, rest = split_statements(query)
        statements += [rest] if rest else []
        if not statements:
            raise _fail("empty query: give a SQL statement, e.g. lakehouse sql 'SHOW TABLES IN gold'")
    spark = _spark(settings)
    quiet_error_logs()
    if query is None:
        shell(spark, settings)
        return
    for statement in statements:
        try:
            df = run_query(spark, statement)
        except query_errors() as exc:
            raise _fail(error_message(exc)) from None
        _print(df, fmt, limit)


def history(
    table: Annotated[str, typer.Argument(help="the table as layer.name, e.g. gold.route_monthly")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="the newest N versions")] = 20,
    fmt: Annotated[OutputFormat, _FORMAT] = OutputFormat.table,
) -> None:
    """Show a table's Delta history, newest first: each version is readable with VERSION AS OF."""
    from lake.cli import _fail, _settings, _spark
    from lake.sql import history as table_history
    from lake.sql import quiet_error_logs

    settings = _settings()
    spark = _spark(settings)
    quiet_error_logs()
    try:
        df = table_history(spark, settings, table, limit)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    _print(df, fmt, None)


def tables(fmt: Annotated[OutputFormat, _FORMAT] = OutputFormat.table) -> None:
    """List the lake's tables (every layer) with their location and current Delta version."""
    from lake.cli import _settings, _spark
    from lake.sql import lake_tables

    settings = _settings()
    spark = _spark(settings)
    _print(lake_tables(spark, settings), fmt, None)


def sql_server(
    host: Annotated[str | None, typer.Option(help="address to bind (default: sql_server.host, 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: sql_server.port, 10000)")] = None,
) -> None:
    """Serve the lake over JDBC/ODBC (Spark Thrift Server) for beeline and BI tools; Ctrl-C stops it."""
    from lake.cli import _fail, _settings
    from lake.spark import SparkSetupError
    from lake.sql_server import SqlServerError, serve

    settings = _settings()
    try:
        serve(settings, host, port)
    except SparkSetupError as exc:
        raise _fail(str(exc), 3) from None
    except SqlServerError as exc:
        raise _fail(str(exc)) from None


def register(app: typer.Typer) -> None:
    """Add the SQL commands to the `lakehouse` app."""
    app.command("sql")(sql)
    app.command("history")(history)
    app.command("tables")(tables)
    app.command("sql-server")(sql_server)
