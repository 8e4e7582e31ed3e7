"""The lake over JDBC/ODBC: Spark's Thrift Server (the HiveServer2 protocol) on our own session.

beeline, DBeaver, Metabase, Superset (PyHive) and any Hive JDBC client connect to
`jdbc:hive2://HOST:PORT/default` and query `bronze.*`, `silver.*`, `gold.*`.

How it fits the per-process catalog: the server runs inside the session `lake.spark.get_spark`
builds (in-memory catalog, tables registered from their Delta locations), so it needs no Hive
metastore and locks nobody out; a background loop re-registers the lake every REFRESH_SECONDS,
so tables a pipeline creates while the server runs become queryable. Hive itself is only used
for the Thrift service's own bookkeeping, with a throwaway in-memory Derby (Spark's default for
the execution client), kept with the other Hive scratch files in a temporary folder.

All JDBC connections share one Spark session (`spark.sql.hive.thriftServer.singleSession`).
That is forced by class loading: Hive opens each connection under a class loader that sees only
Spark's own jars, not the Delta jars that `spark.jars.packages` fetched, so a fresh
per-connection session cannot load the Delta catalog; the shared session has it loaded already.
The cost: `USE`, `SET` and temporary views made by one client are seen by the others. Queries
are unaffected, since tables are addressed as `layer.table`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from lake.settings import Settings
from lake.sql import error_message, refresh_catalog

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

REFRESH_SECONDS = 10.0
START_TIMEOUT_S = 60.0
SINGLE_SESSION = "spark.sql.hive.thriftServer.singleSession"


class SqlServerError(RuntimeError):
    """The server cannot start; the message says why."""


def jdbc_url(host: str, port: int) -> str:
    return f"jdbc:hive2://{host}:{port}/default"


def server_settings(settings: Settings) -> Settings:
    """`settings` plus the static Spark conf the Thrift server needs (it must be set at start)."""
    conf = {**settings.spark.conf, SINGLE_SESSION: "true"}
    return settings.model_copy(update={"spark": settings.spark.model_copy(update={"conf": conf})})


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _check_free(host: str, port: int) -> None:
    """Fail before paying for a Spark start when the port is taken (the server would die late)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise SqlServerError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Thrift's server socket does
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SqlServerError(f"cannot listen on {host}:{port}: {exc.strerror}; pick another with --port") from None


def _wait_listening(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


def _hive_conf(spark: SparkSession, host: str, port: int, scratch: str) -> None:
    """Bind address and Hive's scratch files; the session conf is what the Thrift server reads."""
    settings = {
        "hive.server2.thrift.bind.host": host,
        "hive.server2.thrift.port": str(port),
        "hive.server2.transport.mode": "binary",
        "hive.exec.scratchdir": f"{scratch}/scratch",
        "hive.exec.local.scratchdir": f"{scratch}/local",
        "hive.downloaded.resources.dir": f"{scratch}/${{hive.session.id}}_resources",
        "hive.server2.logging.operation.log.location": f"{scratch}/operation_logs",
        "hive.querylog.location": f"{scratch}/querylog",
    }
    for key, value in settings.items():
        spark.conf.set(key, value)
    os.makedirs(f"{scratch}/local", exist_ok=True)  # Hive logs an error at each disconnect when it is missing
    # Derby (the Thrift service's in-memory bookkeeping) would write derby.log into the cwd.
    jvm: Any = spark._jvm
    jvm.java.lang.System.setProperty("derby.stream.error.file", f"{scratch}/derby.log")


def start(spark: SparkSession, host: str, port: int) -> tuple[Any, str]:
    """Start the Thrift server on `spark`; return (the JVM server, its scratch folder)."""
    if spark.conf.get(SINGLE_SESSION, "false") != "true":
        raise SqlServerError(
            f"this process's Spark session was started without {SINGLE_SESSION}=true; "
            "start the server in its own process (`lakehouse sql-server`)"
        )
    scratch = tempfile.mkdtemp(prefix="lakehouse-sql-server-")
    try:
        _hive_conf(spark, host, port, scratch)
        jvm: Any = spark._jvm
        thrift = jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2
        # exitOnError=False: a failure raises here instead of calling System.exit on the JVM.
        server = thrift.startWithSparkSession(spark._jsparkSession, False)
    except Exception as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        raise SqlServerError(f"the Thrift server did not start: {error_message(exc)}") from exc
    if not _wait_listening(host, port, START_TIMEOUT_S):
        with contextlib.suppress(Exception):
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
        raise SqlServerError(f"the Thrift server did not listen on {host}:{port} within {START_TIMEOUT_S:.0f}s")
    return server, scratch


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve the lake over JDBC until SIGINT/SIGTERM; blocks. Raises SqlServerError, SparkSetupError."""
    from lake.spark import get_spark, stop_spark

    host = host or settings.sql_server.host
    port = port or settings.sql_server.port
    _check_free(host, port)
    _log(f"starting Spark with Delta for the SQL server (lake: {settings.lake_root})...")
    spark = get_spark(server_settings(settings))
    server, scratch = start(spark, host, port)

    stop = threading.Event()
    previous: dict[signal.Signals, Any] = {}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    print(f"Spark Thrift Server ready: {jdbc_url(host, port)}", flush=True)
    _log(f"tables re-registered from the lake every {REFRESH_SECONDS:.0f}s; Ctrl-C stops the server")
    try:
        while not stop.wait(REFRESH_SECONDS):
            try:
                refresh_catalog(spark, settings)
            except Exception as exc:  # a table half-written by a pipeline: retried on the next round
                _log(f"warning: registering the lake's tables failed, retrying later: {error_message(exc)}")
    finally:
        _log("stopping the SQL server...")
        with contextlib.suppress(Exception):
            server.stop()
        stop_spark()
        shutil.rmtree(scratch, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _log("SQL server stopped")


def main(argv: list[str] | None = None) -> int:
    """`python -m lake.sql_server [--host H] [--port P]`: the same as `lakehouse sql-server`."""
    from lake.settings import ConfigError, load_settings
    from lake.spark import SparkSetupError

    parser = argparse.ArgumentParser(
        prog="python -m lake.sql_server", description="Serve the lake over JDBC (as `lakehouse sql-server`)."
    )
    parser.add_argument("--host", help="address to bind (default: sql_server.host from config)")
    parser.add_argument("--port", type=int, help="port to listen on (default: sql_server.port from config)")
    args = parser.parse_args(argv)
    try:
        serve(load_settings(), args.host, args.port)
    except ConfigError as exc:
        _log(f"configuration error: {exc}")
        return 2
    except SparkSetupError as exc:
        _log(str(exc))
        return 3
    except SqlServerError as exc:
        _log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
