"""The Spark Thrift Server as BI tools see it: a real server process, queried with real beeline.

One server for the module (`python -m lake.sql_server` on a free port, the test lake from the
environment). It must serve a table that existed at start, and also what a pipeline writes while
it runs: new rows in that table and a table created after the server started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from lake import io
from lake.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.spark

START_TIMEOUT_S = 180  # a Spark start; generous because CI machines here have 2 busy cores
PICKUP_TIMEOUT_S = 90  # the server re-registers every 10s; each beeline run is a JVM start too


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def beeline(port: int, statements: str) -> subprocess.CompletedProcess[str]:
    import pyspark

    home = Path(pyspark.__file__).parent
    return subprocess.run(
        [
            str(home / "bin" / "beeline"),
            "-u",
            f"jdbc:hive2://127.0.0.1:{port}/default",
            "--silent=true",
            "--showHeader=false",
            "--outputformat=csv2",
            "-e",
            statements,
        ],
        env={**os.environ, "SPARK_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def values(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The result lines beeline printed (it echoes a prompt before the first, even when silent)."""
    lines = [line.rsplit("> ", 1)[-1].strip() for line in result.stdout.splitlines()]
    return [line for line in lines if line]


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def table(spark: SparkSession, settings: Settings) -> str:
    name = f"gold.sqlsrv_{uuid.uuid4().hex[:8]}"
    io.append(spark.range(5).selectExpr("CAST(id AS INT) AS id"), settings, name)
    return name


@pytest.fixture(scope="module")
def server(table: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = free_port()
    log = tmp_path_factory.mktemp("sql_server") / "server.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lake.sql_server", "--port", str(port)],
            env=dict(os.environ),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    srv = Server(proc, port, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not listening(port):
            assert proc.poll() is None, f"the server exited with {proc.returncode}:\n{srv.output()[-4000:]}"
            assert time.monotonic() < deadline, (
                f"no server on port {port} after {START_TIMEOUT_S}s:\n{srv.output()[-4000:]}"
            )
            time.sleep(0.5)
        yield srv
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)


def test_prints_the_jdbc_url(server: Server) -> None:
    assert f"jdbc:hive2://127.0.0.1:{server.port}/default" in server.output()


def test_beeline_counts_a_table(server: Server, table: str) -> None:
    result = beeline(server.port, f"SELECT count(*) FROM {table}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert values(result) == ["5"]


def test_sees_what_a_pipeline_writes_while_it_runs(
    server: Server, table: str, spark: SparkSession, settings: Settings
) -> None:
    late = f"gold.sqlsrv_late_{uuid.uuid4().hex[:8]}"
    io.append(spark.range(2).selectExpr("CAST(id + 100 AS INT) AS id"), settings, table)  # a new version
    io.append(spark.createDataFrame([("written after start",)], "note STRING"), settings, late)  # a new table
    written = time.monotonic()
    time.sleep(8)  # most of one re-registration round: spares a beeline start that would surely fail
    while True:
        result = beeline(server.port, f"SELECT count(*) FROM {table}; SELECT note FROM {late}")
        if result.returncode == 0:
            break
        assert "TABLE_OR_VIEW_NOT_FOUND" in result.stdout + result.stderr, result.stderr[-3000:]
        assert time.monotonic() - written < PICKUP_TIMEOUT_S, f"{late} not served:\n{server.output()[-3000:]}"
        time.sleep(2)
    assert values(result) == ["7", "written after start"]


def test_stops_cleanly_on_sigterm(server: Server) -> None:
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(60) == 0, server.output()[-3000:]
    assert not listening(server.port)
    assert "SQL server stopped" in server.output()
