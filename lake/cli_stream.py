"""`lakehouse kafka start|stop|status`, `lakehouse replay` and `lakehouse stream`.

Registered by `lake.cli` while it is imported, so `lake.cli`'s helpers are imported inside the
commands. `lakehouse stream` prints one JSON line per micro-batch on stdout (what was written,
when it became visible, how fresh it was): pipeable into a log or the benchmark.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from lake.kafka import BrokerStatus
    from lake.settings import Settings
    from lake.stream import StreamSpec

kafka_app = typer.Typer(help="The local single-node Kafka broker (KRaft) on kafka.host:kafka.port.", no_args_is_help=True)


class SourceChoice(str, Enum):
    landing = "landing"
    kafka = "kafka"


def _show(st: BrokerStatus) -> None:
    from lake.cli import out

    state = "ready" if st.ready else ("starting or unreachable" if st.running else "stopped")
    pid = f" (pid {st.pid})" if st.pid else ""
    out.print(f"kafka {state}{pid} on {st.address}; data {st.data_dir}; log {st.log}")


@kafka_app.command("start")
def kafka_start() -> None:
    """Start the broker (jars fetched from Maven Central on first use) and wait until it answers."""
    from lake.cli import _fail, _settings, console
    from lake.kafka import KafkaError, start

    settings = _settings()
    try:
        with console.status("starting Kafka (the first start fetches its jars from Maven Central)..."):
            st = start(settings)
    except KafkaError as exc:
        raise _fail(str(exc)) from None
    _show(st)


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the broker this profile's data dir runs."""
    from lake.cli import _settings, out
    from lake.kafka import stop

    out.print("kafka stopped" if stop(_settings()) else "kafka was not running")


@kafka_app.command("status")
def kafka_status() -> None:
    """Is the broker running and answering? Exit status 1 when it is not ready."""
    from lake.cli import _settings
    from lake.kafka import status

    st = status(_settings())
    _show(st)
    if not st.ready:
        raise typer.Exit(1)


def _spec(settings: Settings) -> StreamSpec:
    from lake.cli import _fail
    from lake.stream import StreamError, load_stream

    try:
        return load_stream(settings)
    except StreamError as exc:
        raise _fail(str(exc), 2) from None


def replay(
    sink: Annotated[SourceChoice | None, typer.Option("--to", help="kafka or landing (default: stream.source)")] = None,
    start: Annotated[dt.datetime | None, typer.Option(help="first day replayed (default: seed.start_date)", formats=["%Y-%m-%d"])] = None,
    count: Annotated[int | None, typer.Option(min=1, help="how many flights (default: all from --start on)")] = None,
    speedup: Annotated[float | None, typer.Option(help="event time runs this many times faster than the wall clock (60: an hour per minute)")] = None,
    rate: Annotated[float | None, typer.Option(help="at most this many records per second")] = None,
    faults: Annotated[str | None, typer.Option(help="fault probabilities, e.g. malformed=0.01,duplicate=0.02,late=0.01,out_of_order=0.01,drift=0.01")] = None,
    seed: Annotated[int, typer.Option(help="random seed of the faults")] = 13,
) -> None:
    """Publish nycflights13 flights as events (JSON keyed by flight id) in event-time order."""
    from lake.cli import _fail, _settings, console, out
    from lake.kafka import KafkaError
    from lake.replay import Faults, ReplayError
    from lake.replay import replay as run_replay

    settings = _settings()
    spec = _spec(settings)
    try:
        parsed = Faults.parse(faults)
        with console.status(f"publishing {spec.name} events..."):
            sent = run_replay(
                settings, spec, sink.value if sink else None, start.date() if start else None, count, speedup, rate, parsed, seed
            )
    except (ReplayError, KafkaError) as exc:
        raise _fail(str(exc), 2 if isinstance(exc, ReplayError) else 1) from None
    out.print(json.dumps(sent.to_json()))


def stream(
    source: Annotated[SourceChoice | None, typer.Option(help="kafka or landing (default: stream.source)")] = None,
    available_now: Annotated[bool, typer.Option("--available-now", help="process what is there now, then exit")] = False,
    refine: Annotated[bool, typer.Option("--refine", help="also merge new events into silver (every stream.refine_every_seconds)")] = False,
    trigger_seconds: Annotated[float | None, typer.Option(help="micro-batch interval (default: stream.trigger_seconds)")] = None,
    max_seconds: Annotated[float | None, typer.Option(help="stop cleanly after this long")] = None,
) -> None:
    """Stream events into bronze (exactly once, checkpointed); Ctrl-C or SIGTERM stops cleanly."""
    from lake.cli import _fail, _settings, _spark, console
    from lake.kafka import KafkaError
    from lake.stream import (
        BatchReport,
        StreamError,
        ingest_available,
        refine_available,
        refine_waiting_for,
        start_ingest,
        start_refine,
    )

    settings = _settings()
    spec = _spec(settings)
    chosen = source.value if source else settings.stream.source
    spark = _spark(settings)
    lock = threading.Lock()

    def show(report: BatchReport) -> None:
        with lock:
            sys.stdout.write(json.dumps(report.to_json()) + "\n")
            sys.stdout.flush()

    try:
        if available_now:
            summary = ingest_available(spark, settings, spec, chosen)
            console.print(f"{chosen} -> {summary.table}: {summary.rows} events, {summary.quarantined} quarantined, "
                          f"{summary.batches} batches, version {summary.version}")  # fmt: skip
            if refine:
                waited = refine_available(spark, settings, spec)
                console.print(waited or f"{spec.target} -> {spec.merge_into}: merged")
            return
        every = trigger_seconds or settings.stream.trigger_seconds
        queries = [start_ingest(spark, settings, spec, chosen, every, show)]
        console.print(f"streaming {chosen} -> {spec.target} every {every:g} s (checkpointed); Ctrl-C stops")

        def begin_refine() -> Any:
            waiting = refine_waiting_for(spark, settings, spec)
            if waiting:
                return f"waiting for {', '.join(waiting)}"
            return start_refine(spark, settings, spec, settings.stream.refine_every_seconds)

        _run_until_stopped(queries, begin_refine if refine else None, max_seconds)
    except (StreamError, KafkaError) as exc:
        raise _fail(str(exc), 2 if isinstance(exc, StreamError) else 1) from None


def _run_until_stopped(queries: list[Any], begin_refine: Callable[[], Any] | None, max_seconds: float | None) -> None:
    """Wait on the queries; SIGTERM/SIGINT or `max_seconds` stop them between batches.

    `begin_refine` starts the silver query, or returns why it cannot yet (retried every 10 s).
    """
    from lake.cli import _fail, console
    from lake.metrics import STREAM_LAG_RECORDS, push
    from lake.settings import get_settings
    from lake.stream import lag_records

    stopping = threading.Event()

    def stop(_sig: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    deadline = time.monotonic() + max_seconds if max_seconds else None
    while not stopping.is_set() and (deadline is None or time.monotonic() < deadline):
        if begin_refine is not None:
            started = begin_refine()
            if isinstance(started, str):
                console.print(f"silver refine {started}")
                stopping.wait(10)
                continue
            queries.append(started)
            begin_refine = None
        lag = lag_records(queries[0]) if queries[0].isActive else None
        if lag is not None:
            STREAM_LAG_RECORDS.labels(source=queries[0].name.split("-", 1)[0]).set(lag)
            push(get_settings(), only=[("source", queries[0].name.split("-", 1)[0])], every=5)  # idle streams too
        for q in queries:
            if not q.isActive:
                error = q.exception()
                raise _fail(f"streaming query {q.name} stopped: {error}" if error else f"streaming query {q.name} stopped")
        stopping.wait(0.5)
    for q in queries:
        q.stop()
    console.print("stopped cleanly")


def register(app: typer.Typer) -> None:
    """Add the streaming commands to the `lakehouse` app."""
    app.add_typer(kafka_app, name="kafka")
    app.command("replay")(replay)
    app.command("stream")(stream)
