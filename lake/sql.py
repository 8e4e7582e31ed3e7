"""SQL over the lake's Delta tables through Spark: run, render, time travel history, a shell.

Analysts query `bronze.*`, `silver.*`, `gold.*` by name. The catalog is per process: tables are
registered from the lake's folders (`lake.spark.register_lake`), so the shell re-registers now
and then to see tables that a pipeline running elsewhere has created since.

Values are rendered by Spark itself (casts to string for tables and CSV, `to_json` for JSON):
timestamps then read in the session time zone (UTC), not in the Python process's local one.
"""

from __future__ import annotations

import contextlib
import csv
import io as _stdio
import os
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from lake.settings import Settings
from lake.spark import LAYERS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from rich.console import Console
    from rich.table import Table

TABLE_MAX_ROWS = 1000  # a table on a terminal past this is unreadable; csv/json are not capped
REFRESH_SECONDS = 5.0  # the shell re-registers the lake's tables at most this often
HISTORY_FILE = "~/.lakehouse_history"
PROMPT = "lakehouse> "
CONTINUATION = "       ...> "
_JSON_OPTIONS = {
    "ignoreNullFields": "false",
    "timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX",
    "timestampNTZFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSS",
}
_NUMERIC_TYPES = ("tinyint", "smallint", "int", "bigint", "float", "double", "decimal")


class OutputFormat(str, Enum):
    """How query results are printed."""

    table = "table"
    csv = "csv"
    json = "json"


class QueryError(ValueError):
    """A query that cannot run, with a message fit for one line."""


def run_query(spark: SparkSession, query: str) -> DataFrame:
    """Run one SQL statement; commands (CREATE, INSERT, ...) run now, queries when collected."""
    text = query.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    if not text:
        raise QueryError("empty query: give one SQL statement, e.g. SELECT count(*) FROM gold.<table>")
    return spark.sql(text)


def split_statements(text: str) -> tuple[list[str], str]:
    """Split SQL text on `;` outside quotes and comments: (complete statements, unfinished rest).

    The shell uses the rest to know that a statement continues on the next line.
    """
    statements: list[str] = []
    start, i, n = 0, 0, len(text)
    quote: str | None = None
    while i < n:
        ch = text[i]
        if quote:
            if ch == "\\" and quote != "`":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in ("'", '"', "`"):
            quote = ch
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        elif ch == ";":
            statement = text[start:i].strip()
            if _has_code(statement):
                statements.append(statement)
            start = i + 1
        i += 1
    rest = text[start:]
    return statements, rest if _has_code(rest) else ""


def _has_code(text: str) -> bool:
    """True when `text` holds more than whitespace and comments."""
    lines = [line.split("--", 1)[0] for line in text.splitlines()]
    stripped = "\n".join(lines)
    while "/*" in stripped:
        head, _, tail = stripped.partition("/*")
        stripped = head + (tail.partition("*/")[2] if "*/" in tail else "")
    return bool(stripped.strip())


def render(df: DataFrame, fmt: str, limit: int | None = None) -> str:
    """Collect `df` and format it as a text table, CSV (with header) or JSON lines.

    Statements without a result (CREATE, INSERT, ...) have no columns and render as "OK".
    The table format shows at most TABLE_MAX_ROWS rows unless `limit` says otherwise.
    """
    fmt = OutputFormat(fmt).value
    if not df.columns:
        return "OK\n"
    if fmt == OutputFormat.json.value:
        return _render_json(df, limit)
    if fmt == OutputFormat.csv.value:
        names, rows, _ = _text_rows(df, limit)
        buffer = _stdio.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(["" if v is None else v for v in row] for row in rows)
        return buffer.getvalue()
    table, footer = rich_table(df, limit)
    return _to_text(table) + footer + "\n"


def rich_table(df: DataFrame, limit: int | None = None) -> tuple[Table, str]:
    """The result as a rich Table, plus a footer line with the row count (and any truncation)."""
    from rich.table import Table
    from rich.text import Text

    shown = limit if limit is not None else TABLE_MAX_ROWS
    names, rows, more = _text_rows(df, shown)
    numeric = [t.startswith(_NUMERIC_TYPES) for _, t in df.dtypes]
    table = Table(show_edge=True, header_style="bold")
    for name, is_number in zip(names, numeric, strict=True):
        table.add_column(Text(name), justify="right" if is_number else "left", no_wrap=True, overflow="fold")
    for row in rows:
        table.add_row(*(Text("NULL", style="dim") if v is None else Text(v) for v in row))
    count = f"{len(rows)} row" + ("" if len(rows) == 1 else "s")
    footer = f"({count}; more rows exist: raise --limit)" if more else f"({count})"
    return table, footer


def _text_rows(df: DataFrame, limit: int | None) -> tuple[list[str], list[list[str | None]], bool]:
    """Column names, rows of strings as Spark prints them, and whether rows were cut by `limit`."""
    from pyspark.sql import functions as F

    names = df.columns
    safe = [f"c{i}" for i in range(len(names))]  # duplicate or odd names cannot break the select
    typed = df.toDF(*safe)
    columns = [
        F.hex(F.col(c)) if t == "binary" else F.col(c).cast("string") for c, (_, t) in zip(safe, df.dtypes, strict=True)
    ]
    selected = typed.select(*columns)
    if limit is not None:
        collected = selected.limit(limit + 1).collect()
        more = len(collected) > limit
        collected = collected[:limit]
    else:
        collected, more = selected.collect(), False
    return names, [list(r) for r in collected], more


def _render_json(df: DataFrame, limit: int | None) -> str:
    """JSON lines written by Spark: ISO dates/timestamps (UTC), decimals as exact numbers."""
    from pyspark.sql import functions as F

    names = df.columns
    safe = [f"c{i}" for i in range(len(names))]
    typed = df.toDF(*safe)
    line = F.to_json(F.struct(*[F.col(c).alias(n) for c, n in zip(safe, names, strict=True)]), _JSON_OPTIONS)
    selected = typed.select(line)
    if limit is not None:
        selected = selected.limit(limit)
    return "".join(f"{row[0]}\n" for row in selected.collect())


def _to_text(table: Table) -> str:
    """Plain text of a rich table, wide enough that no row wraps."""
    from rich.console import Console
    from rich.measure import Measurement

    probe = Console(width=100_000, color_system=None)
    width = Measurement.get(probe, probe.options, table).maximum
    buffer = _stdio.StringIO()
    console = Console(file=buffer, width=max(40, width), color_system=None, force_terminal=False, soft_wrap=False)
    console.print(table)
    return buffer.getvalue()


def _table_name(table: str) -> tuple[str, str]:
    layer, dot, name = table.partition(".")
    if not dot or not name or layer not in LAYERS:
        raise ValueError(f"table {table!r}: name it as <layer>.<table>, the layer one of {', '.join(LAYERS)}")
    return layer, name


def history(spark: SparkSession, settings: Settings, table: str, limit: int = 20) -> DataFrame:
    """The Delta history of `layer.name`, newest first: the versions `VERSION AS OF` can read."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from lake import io

    layer, name = _table_name(table)
    known = io.list_tables(spark, settings, layer)
    if name not in known:
        listing = ", ".join(f"{layer}.{t}" for t in known) or "none yet"
        raise ValueError(
            f"unknown table {table!r} (no Delta table at {settings.table_path(layer, name)}); {layer} has: {listing}"
        )
    log = DeltaTable.forPath(spark, settings.table_path(layer, name)).history(limit)
    return log.select(
        "version",
        "timestamp",
        "operation",
        F.col("operationMetrics").getItem("numOutputRows").cast("long").alias("numOutputRows"),
        F.to_json("operationParameters").alias("operationParameters"),
        F.to_json("operationMetrics").alias("operationMetrics"),
    ).orderBy(F.col("version").desc())


def lake_tables(spark: SparkSession, settings: Settings) -> DataFrame:
    """Every table in the lake: name, location and current Delta version."""
    from lake import io

    rows = []
    for layer in LAYERS:
        for name in io.list_tables(spark, settings, layer):
            table = f"{layer}.{name}"
            rows.append((table, settings.table_path(layer, name), io.version(spark, settings, table)))
    return spark.createDataFrame(rows, "table STRING, location STRING, version BIGINT")


def query_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a bad query raises (Spark's own and Java errors py4j did not convert)."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    return (QueryError, PySparkException, Py4JJavaError)


def error_message(exc: BaseException) -> str:
    """The first meaningful line of an error: what went wrong, without the JVM stack trace."""
    from py4j.protocol import Py4JJavaError

    text = str(exc)
    if isinstance(exc, Py4JJavaError):
        with contextlib.suppress(Exception):  # the JVM may be gone; the Python text is still there
            text = str(exc.java_exception.toString())
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def quiet_error_logs() -> None:
    """Stop PySpark logging every failed query as a JSON record with the Java stack trace.

    The CLI and the shell already print one line per error; the record only buries it.
    """
    import logging

    from pyspark.logger import PySparkLogger

    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)


def refresh_catalog(spark: SparkSession, settings: Settings) -> bool:
    """Register the tables other processes created since; True when there were any."""
    from lake.spark import register_lake

    return bool(register_lake(spark, settings))


class _Refresher:
    """Refresh the catalog when the last refresh is older than REFRESH_SECONDS."""

    def __init__(self, spark: SparkSession, settings: Settings) -> None:
        self.spark, self.settings = spark, settings
        self.last = time.monotonic()  # get_spark has just registered everything

    def __call__(self) -> None:
        if time.monotonic() - self.last >= REFRESH_SECONDS:
            refresh_catalog(self.spark, self.settings)
            self.last = time.monotonic()


def _setup_readline() -> Callable[[], None]:
    """Load ~/.lakehouse_history; return what saves it on the way out."""
    try:
        import readline
    except ImportError:  # pragma: no cover - not on Linux
        return lambda: None
    path = Path(os.path.expanduser(HISTORY_FILE))
    with contextlib.suppress(OSError):
        readline.read_history_file(path)
    readline.set_history_length(2000)

    def save() -> None:
        with contextlib.suppress(OSError):
            readline.write_history_file(path)

    return save


def _list_tables_table(spark: SparkSession, settings: Settings) -> Table:
    from rich.table import Table

    from lake import io

    table = Table("layer", "table", header_style="bold")
    for layer in LAYERS:
        for name in io.list_tables(spark, settings, layer):
            table.add_row(layer, name)
    return table


_SHELL_HELP = (
    "end statements with ; (they may span lines); \\dt lists tables; \\q, exit or quit leaves\n"
    "time travel: SELECT ... FROM gold.t VERSION AS OF 3 (or TIMESTAMP AS OF '2013-01-01')"
)


def shell(
    spark: SparkSession,
    settings: Settings,
    read_line: Callable[[str], str] | None = None,
    console: Console | None = None,
) -> None:
    """The interactive SQL prompt; `read_line` and `console` let tests script it."""
    from rich.console import Console

    console = console or Console()
    quiet_error_logs()
    save_history: Callable[[], None] = lambda: None  # noqa: E731
    if read_line is None:
        save_history = _setup_readline()
        read_line = input
    refresh = _Refresher(spark, settings)
    console.print(f"[bold]lakehouse SQL[/bold] on {settings.lake_root}\n{_SHELL_HELP}", highlight=False)
    buffer = ""
    try:
        while True:
            try:
                line = read_line(CONTINUATION if buffer else PROMPT)
            except EOFError:
                console.print()
                break
            except KeyboardInterrupt:  # Ctrl-C drops the statement being typed, like psql
                console.print()
                buffer = ""
                continue
            if not buffer:
                command = line.strip().rstrip(";").strip()
                if command in ("\\q", "exit", "quit"):
                    break
                if command in ("\\dt", "\\d"):
                    console.print(_list_tables_table(spark, settings))
                    continue
                if command in ("\\?", "help"):
                    console.print(_SHELL_HELP, highlight=False)
                    continue
            buffer = f"{buffer}\n{line}" if buffer else line
            statements, buffer = split_statements(buffer)
            for statement in statements:
                _run_in_shell(spark, statement, refresh, console)
    finally:
        save_history()


def _run_in_shell(spark: SparkSession, statement: str, refresh: Callable[[], None], console: Console) -> None:
    """Run one statement and print its result; a bad statement prints one line and is forgotten."""
    try:
        refresh()
        df = run_query(spark, statement)
        if not df.columns:
            console.print("OK")
            return
        table, footer = rich_table(df)
        console.print(table)
        console.print(footer, style="dim", highlight=False)
    except KeyboardInterrupt:
        spark.sparkContext.cancelAllJobs()
        console.print("[yellow]cancelled[/yellow]")
    except query_errors() as exc:
        from rich.markup import escape

        console.print(f"[red]error[/red]: {escape(error_message(exc))}", highlight=False)
