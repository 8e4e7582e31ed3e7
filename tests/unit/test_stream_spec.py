"""The stream declaration and the replayer's fault plan, on tiny in-memory data (no Spark, no broker)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from lake.replay import Faults, Published, ReplayError, flight_events, plan
from lake.settings import load_settings
from lake.stream import StreamError, load_stream


def test_shipped_declaration_loads() -> None:
    spec = load_stream(load_settings("test", environ={}))
    assert (spec.target, spec.key, spec.event_time, spec.merge_into) == (
        "bronze.flight_events", "flight_id", "event_time", "silver.flights",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"on_new_field": "ignore"}, "on_new_field"),
        ({"key": "nope"}, "`key` names 'nope'"),
        ({"event_time": "year"}, "must be declared as a timestamp"),
        ({"target": "silver.x"}, "bronze table"),
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"schema": {"flight_id": "text", "event_time": "timestamp"}}, "unknown type 'text'"),
    ],
)
def test_bad_declaration_names_the_key(tmp_path: Path, change: dict[str, object], message: str) -> None:
    settings = load_settings("test", environ={})
    data = json.loads(load_stream(settings).model_dump_json(by_alias=True)) | change
    file = tmp_path / "s.yml"
    file.write_text(json.dumps(data))
    with pytest.raises(StreamError) as err:
        load_stream(settings, str(file))
    assert message in str(err.value) and str(file) in str(err.value)


def test_faults_parse_and_refuse() -> None:
    assert Faults.parse("malformed=0.1, late=0") == Faults(malformed=0.1)
    with pytest.raises(ReplayError, match="unknown fault 'lost'"):
        Faults.parse("lost=0.1")
    with pytest.raises(ReplayError, match="between 0 and 1"):
        Faults.parse("duplicate=2")


def test_plan_orders_events_and_holds_back_faults() -> None:
    events = flight_events(dt.date(2013, 1, 1), 400)
    assert events["event_time"].is_monotonic_increasing
    sent = Published()
    records = [r for _, r in plan(events, Faults(late=0.2, out_of_order=0.2, duplicate=0.2, malformed=0.1), 1, sent)]
    trues = [r for r in records if r.kind == "event"]
    assert len(trues) == 400 and len({r.key for r in trues}) == 400
    assert sum(r.kind == "malformed" for r in records) == sent.malformed > 0
    assert sum(r.kind == "duplicate" for r in records) == sent.duplicates > 0
    assert sum(r.kind == "stale" for r in records) == sent.late + sent.out_of_order
    position = {id(r): i for i, r in enumerate(records)}
    for key in {r.key for r in records if r.kind == "stale"}:
        stale = next(r for r in records if r.key == key and r.kind == "stale")
        true = next(r for r in records if r.key == key and r.kind == "event")
        old, new = json.loads(stale.value), json.loads(true.value)
        assert old["event_time"] < new["event_time"]  # a stale version is older by event time...
        assert old["dep_delay"] != new["dep_delay"]  # ...and different, so a wrong winner shows
        assert position[id(stale)] != position[id(true)]
