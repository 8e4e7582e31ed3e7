"""SQL over the lake as analysts use it: results in every format, time travel, history, the shell.

One small gold table for the module, written twice through `lake.io` (version 0: two rows,
version 1: one more), so time travel and history have something to tell apart. The last test
goes through `python -m lake sql` in a subprocess, a separate Spark that only knows the lake's
folders, exactly as an analyst's terminal would.
"""

from __future__ import annotations

import csv
import datetime as dt
import io as stdio
import json
import os
import subprocess
import sys
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from lake import io, sql
from lake.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.spark

DDL = "id INT, name STRING, amount DECIMAL(10,2), day DATE, at TIMESTAMP"
FIRST: list[tuple[Any, ...]] = [
    (1, 'a[b], "quoted"', Decimal("1.50"), dt.date(2013, 1, 2), dt.datetime(2013, 1, 1, 5, 6, 7, 123456)),
    (2, None, None, None, None),
]
SECOND: list[tuple[Any, ...]] = [
    (3, "c", Decimal("-2.00"), dt.date(2013, 12, 31), dt.datetime(2013, 12, 31, 23, 59, 59))
]


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def table(spark: SparkSession, settings: Settings) -> str:
    """gold.sqltest_*: version 0 holds FIRST, version 1 adds SECOND."""
    name = f"gold.{unique('sqltest')}"
    for rows in (FIRST, SECOND):
        # Timestamps go in as text and are cast by Spark: UTC (the session zone), whatever the local one.
        as_text = [(*r[:4], r[4].isoformat(sep=" ") if r[4] else None) for r in rows]
        df = spark.createDataFrame(as_text, DDL.replace("TIMESTAMP", "STRING"))
        io.append(df.withColumn("at", df["at"].cast("timestamp")), settings, name)
    assert io.version(spark, settings, name) == 1
    return name


def query(spark: SparkSession, text: str, fmt: str, limit: int | None = None) -> str:
    return sql.render(sql.run_query(spark, text), fmt, limit)


def test_json_lines_keep_types(spark: SparkSession, table: str) -> None:
    out = query(spark, f"SELECT * FROM {table} ORDER BY id;  ", "json")
    rows = [json.loads(line, parse_float=Decimal) for line in out.splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3]
    first, empty, last = rows
    assert first["name"] == FIRST[0][1]
    assert first["amount"] == Decimal("1.50") and last["amount"] == Decimal("-2.00")  # numbers, not strings
    assert first["day"] == "2013-01-02"
    assert dt.datetime.fromisoformat(first["at"]) == dt.datetime(2013, 1, 1, 5, 6, 7, 123456, tzinfo=dt.UTC)
    assert empty == {"id": 2, "name": None, "amount": None, "day": None, "at": None}  # nulls are kept, not dropped
    assert list(first) == ["id", "name", "amount", "day", "at"]


def test_csv_round_trips(spark: SparkSession, table: str) -> None:
    out = query(spark, f"SELECT id, name, amount, day, at FROM {table} ORDER BY id", "csv")
    rows = list(csv.DictReader(stdio.StringIO(out)))
    assert [r["id"] for r in rows] == ["1", "2", "3"]
    assert rows[0]["name"] == FIRST[0][1]  # comma and quotes survive the CSV quoting
    assert Decimal(rows[0]["amount"]) == Decimal("1.50")
    assert rows[0]["day"] == "2013-01-02"
    assert rows[0]["at"] == "2013-01-01 05:06:07.123456"
    assert rows[1] == {"id": "2", "name": "", "amount": "", "day": "", "at": ""}


def test_table_format(spark: SparkSession, table: str) -> None:
    out = query(spark, f"SELECT id, name, amount AS total FROM {table} ORDER BY id", "table")
    lines = out.splitlines()
    header = next(line for line in lines if "total" in line)
    assert "id" in header and "name" in header
    assert any("a[b]" in line and "1.50" in line for line in lines)  # brackets are text, not rich markup
    assert any("NULL" in line and " 2 " in line for line in lines)
    assert lines[-1] == "(3 rows)"


def test_limit(spark: SparkSession, table: str) -> None:
    csv_out = query(spark, f"SELECT id FROM {table} ORDER BY id", "csv", limit=2)
    assert csv_out.splitlines() == ["id", "1", "2"]
    table_out = query(spark, f"SELECT id FROM {table} ORDER BY id", "table", limit=1)
    assert "more rows exist" in table_out.splitlines()[-1]
    assert len(query(spark, f"SELECT id FROM {table}", "json", limit=1).splitlines()) == 1


def test_statements_without_result_render_ok(spark: SparkSession, table: str) -> None:
    view = unique("v")
    assert query(spark, f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT id FROM {table};", "table") == "OK\n"
    assert query(spark, f"SELECT count(*) AS n FROM {view}", "csv").splitlines() == ["n", "3"]


def test_empty_query_is_refused(spark: SparkSession) -> None:
    with pytest.raises(sql.QueryError, match="empty query"):
        sql.run_query(spark, "  ;; \n")


def test_split_statements() -> None:
    text = "SELECT ';' AS a; -- c; d\nSELECT `x;y` /* ; */ FROM t;\nSELECT 'it\\'s;'"
    statements, rest = sql.split_statements(text)
    assert statements == ["SELECT ';' AS a", "-- c; d\nSELECT `x;y` /* ; */ FROM t"]
    assert rest == "\nSELECT 'it\\'s;'"
    assert sql.split_statements("SELECT 1; -- done\n") == (["SELECT 1"], "")


def test_time_travel_reads_the_old_version(spark: SparkSession, settings: Settings, table: str) -> None:
    now = query(spark, f"SELECT id FROM {table} ORDER BY id", "csv").splitlines()[1:]
    then = query(spark, f"SELECT id FROM {table} VERSION AS OF 0 ORDER BY id", "csv").splitlines()[1:]
    assert now == ["1", "2", "3"]
    assert then == ["1", "2"]
    commits = sql.history(spark, settings, table).selectExpr("version", "CAST(timestamp AS STRING) AS at")
    first_commit = {r["version"]: r["at"] for r in commits.collect()}[0]
    by_time = query(spark, f"SELECT count(*) AS n FROM {table} TIMESTAMP AS OF '{first_commit}'", "csv")
    assert by_time.splitlines() == ["n", "2"]


def test_history_newest_first(spark: SparkSession, settings: Settings, table: str) -> None:
    rows = sql.history(spark, settings, table).collect()
    assert [r["version"] for r in rows] == [1, 0]
    assert [r["operation"] for r in rows] == ["WRITE", "WRITE"]
    assert [r["numOutputRows"] for r in rows] == [1, 2]
    assert json.loads(rows[0]["operationParameters"])["mode"] == "Append"
    assert json.loads(rows[1]["operationMetrics"])["numOutputRows"] == "2"
    assert rows[0]["timestamp"] >= rows[1]["timestamp"]
    assert [r["version"] for r in sql.history(spark, settings, table, limit=1).collect()] == [1]


def test_history_of_unknown_table_names_it_and_lists_known(spark: SparkSession, settings: Settings, table: str) -> None:
    with pytest.raises(ValueError, match=r"unknown table 'gold\.nope_") as err:
        sql.history(spark, settings, unique("gold.nope"))
    assert table in str(err.value)
    with pytest.raises(ValueError, match="bronze, silver, gold, quarantine"):
        sql.history(spark, settings, "platinum.x")


def test_tables_written_elsewhere_are_picked_up(spark: SparkSession, settings: Settings) -> None:
    """A table another process wrote is only a folder to us until the catalog is refreshed."""
    name = unique("sqltest_elsewhere")
    spark.createDataFrame([(1,)], "x INT").write.format("delta").save(settings.table_path("gold", name))
    assert not spark.catalog.tableExists(f"gold.{name}")
    assert sql.refresh_catalog(spark, settings) is True
    assert query(spark, f"SELECT x FROM gold.{name}", "csv").splitlines() == ["x", "1"]
    assert sql.refresh_catalog(spark, settings) is False  # nothing new: no re-registration


def test_shell_session(spark: SparkSession, settings: Settings, table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql, "REFRESH_SECONDS", 0.0)
    late = unique("sqltest_shell")
    lines = iter(
        [
            "\\dt",
            f"SELECT id, name FROM {table}",
            "WHERE id = 3;",
            "SELECT nope FROM nowhere;",
            f"SELECT count(*) AS n FROM {table} VERSION AS OF 0; SELECT 40 + 2 AS answer;",
            f"SELECT x FROM gold.{late};",  # written "elsewhere" by the read_line below
            "\\q",
            "SELECT 'never reached';",
        ]
    )

    prompts: list[str] = []

    def read_line(prompt: str) -> str:
        line = next(lines)
        if late in line:
            spark.createDataFrame([(7,)], "x INT").write.format("delta").save(settings.table_path("gold", late))
        prompts.append(prompt)
        return line

    buffer = stdio.StringIO()
    sql.shell(spark, settings, read_line=read_line, console=Console(file=buffer, width=200, color_system=None))
    out = buffer.getvalue()
    assert prompts[:3] == [sql.PROMPT, sql.PROMPT, sql.CONTINUATION]  # the statement went on
    assert table.split(".")[1] in out  # \dt
    assert any(" 3 " in line and " c " in line for line in out.splitlines())
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "nowhere" in errors[0]  # one line, and the shell went on
    assert "\tat " not in out and "Traceback" not in out
    assert "42" in out and any(line.strip("│ ") == "2" for line in out.splitlines())
    assert any(line.strip("│ ") == "7" for line in out.splitlines())  # the late table was registered
    assert "never reached" not in out


def test_cli_in_process(spark: SparkSession, table: str) -> None:
    from lake.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["sql", f"SELECT id FROM {table} ORDER BY id", "--format", "csv", "--limit", "2"])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.splitlines() == ["id", "1", "2"]
    hist = runner.invoke(app, ["history", table, "--format", "json"])
    assert hist.exit_code == 0, hist.output
    assert [json.loads(line)["version"] for line in hist.stdout.splitlines()] == [1, 0]
    listed = runner.invoke(app, ["tables", "--format", "json"])
    by_name = {r["table"]: r for r in map(json.loads, listed.stdout.splitlines())}
    assert by_name[table]["version"] == 1
    unknown = runner.invoke(app, ["history", "gold.nope_nope"])
    assert unknown.exit_code == 1 and "unknown table 'gold.nope_nope'" in unknown.stderr


def test_cli_subprocess_json_and_bad_query(table: str) -> None:
    """`lakehouse sql` in its own process: JSON on stdout, then a bad statement exits 1 on one line."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lake",
            "sql",
            f"SELECT id, amount, day FROM {table} WHERE id <> 2 ORDER BY id; SELECT nope FROM {table}",
            "--format",
            "json",
        ],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    rows = [json.loads(line, parse_float=Decimal) for line in proc.stdout.splitlines()]
    assert rows == [
        {"id": 1, "amount": Decimal("1.50"), "day": "2013-01-02"},
        {"id": 3, "amount": Decimal("-2.00"), "day": "2013-12-31"},
    ]
    errors = [line for line in proc.stderr.splitlines() if "nope" in line]
    assert len(errors) == 1 and errors[0].startswith("error: [UNRESOLVED_COLUMN"), proc.stderr[-3000:]
    assert "\tat " not in proc.stderr and "Traceback" not in proc.stderr
