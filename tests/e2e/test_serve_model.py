"""The model endpoint over real HTTP: real December 2013 flights, batching, a champion swap under
continuous requests with zero failures, and the Delta inference log.

The app serves `model_source: files`: the champion is a real XGBoost booster trained on the session
lake's silver flights with the same feature client the server uses (`serve.model_app.train_reference_model`).
The registry path (ml.models champion, Feast online features) is tests/e2e/test_serve_registry.py.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import xgboost
from deltalake import DeltaTable

from serve.model_app import FileModelSource, GoldFeatureClient, train_reference_model
from tests.e2e.conftest import LATER_DAY, ServeApp

pytestmark = [pytest.mark.e2e, pytest.mark.ray]
PREDICT = "/v1/models/flight-delay/predict"


def real_flights(app: ServeApp, n: int) -> list[dict[str, Any]]:
    """`n` real flights of the latest day in the lake, as a client would send them."""
    columns = ["carrier", "flight", "origin", "dest", "sched_dep_utc", "tailnum", "flight_date"]
    rows = DeltaTable(app.lake.settings.table_path("silver", "flights")).to_pyarrow_table(columns=columns).to_pylist()
    rows = sorted((r for r in rows if r["flight_date"] == LATER_DAY), key=lambda r: (r["sched_dep_utc"], r["carrier"], r["flight"]))
    assert len(rows) >= n
    return [
        {
            "carrier": r["carrier"],
            "flight": r["flight"],
            "origin": r["origin"],
            "dest": r["dest"],
            "sched_dep_utc": r["sched_dep_utc"].astimezone(dt.UTC).isoformat(),
            "tailnum": r["tailnum"],
        }
        for r in rows[:: max(1, len(rows) // n)][:n]
    ]


def test_predicts_real_december_flights(serve_app: ServeApp, model_dir: Path) -> None:
    flights = real_flights(serve_app, 24)
    with serve_app.client() as client:
        many = client.post(PREDICT, json=flights)
        one = client.post(PREDICT, json=flights[0])
    assert many.status_code == 200, many.text
    predictions = many.json()["predictions"]
    assert len(predictions) == 24
    assert one.json()["predictions"] == predictions[:1]

    # The same features computed here from the same gold tables, the same booster: the same answer.
    local = GoldFeatureClient(serve_app.lake.settings)
    local._refresh()
    booster = xgboost.Booster(model_file=str(model_dir / "v1.ubj"))
    for flight, prediction in zip(flights, predictions, strict=True):
        expected = local.features_of(
            flight["carrier"], flight["origin"], flight["dest"], dt.datetime.fromisoformat(flight["sched_dep_utc"])
        )
        assert prediction["features"] == expected
        assert prediction["missing_features"] == [n for n in booster.feature_names or [] if expected[n] is None]
        row = np.array([[np.nan if expected[n] is None else expected[n] for n in booster.feature_names or []]], dtype=np.float32)
        assert prediction["delay_probability"] == pytest.approx(float(booster.inplace_predict(row)[0]), abs=1e-6)
        assert 0.0 <= prediction["delay_probability"] <= 1.0
        assert prediction["model_version"] == "v1"
    assert len({p["delay_probability"] for p in predictions}) > 1  # the features matter


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"carrier": "UA", "flight": 1, "origin": "EWR", "dest": "IAH"}, "sched_dep_utc", "Field required"),
        ({"carrier": "united", "flight": 1, "origin": "EWR", "dest": "IAH", "sched_dep_utc": "2013-12-03T10:00:00"}, "carrier", "pattern"),
        ({"carrier": "UA", "flight": -4, "origin": "EWR", "dest": "IAH", "sched_dep_utc": "2013-12-03T10:00:00"}, "flight", "greater than"),
        ({"carrier": "UA", "flight": 1, "origin": "EWR", "dest": "IAH", "sched_dep_utc": "yesterday"}, "sched_dep_utc", "datetime"),
        ({"carrier": "UA", "flight": 1, "origin": "EWR", "dest": "IAH", "sched_dep_utc": "2013-12-03T10:00:00", "x": 1}, "x", "Extra inputs"),
        ([], "body", "empty"),
    ],
)
def test_bad_bodies_are_422_naming_the_field(serve_app: ServeApp, body: Any, field: str, words: str) -> None:
    with serve_app.client() as client:
        response = client.post(PREDICT, json=body)
    assert response.status_code == 422, response.text
    assert field in (response.json()["field"] or "")
    assert words in response.json()["error"]


def test_too_many_flights_and_too_large_bodies(serve_app: ServeApp) -> None:
    flight = real_flights(serve_app, 1)[0]
    with serve_app.client() as client:
        too_many = client.post(PREDICT, json=[flight] * 1001)
        too_large = client.post(PREDICT, content=b"[" + b" " * serve_app.lake.settings.serve.max_body_bytes + b"]")
        not_json = client.post(PREDICT, content=b"{not json", headers={"Content-Type": "application/json"})
    assert too_many.status_code == 422 and "at most 1000" in too_many.json()["error"]
    assert too_large.status_code == 413
    assert not_json.status_code == 422


def test_champion_swap_under_continuous_requests_drops_nothing(serve_app: ServeApp, model_dir: Path) -> None:
    flights = real_flights(serve_app, 4)
    source = FileModelSource(str(model_dir))
    train_reference_model(serve_app.lake.settings, rounds=25, max_depth=6).save_model(str(model_dir / "v2.ubj"))
    seen: list[list[tuple[int, str]]] = [[] for _ in range(4)]
    stop = threading.Event()

    def hammer(worker: int) -> None:
        with serve_app.client() as client:
            while not stop.is_set():
                try:
                    response = client.post(PREDICT, json=flights[worker])
                    seen[worker].append((response.status_code, response.json()["predictions"][0]["model_version"]))
                except (httpx.HTTPError, KeyError, ValueError) as exc:
                    seen[worker].append((0, repr(exc)))

    workers = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for w in workers:
        w.start()
    try:
        time.sleep(3)
        source.promote("v2")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(s and s[-1][1] == "v2" for s in seen):
            time.sleep(0.5)
        time.sleep(2)  # keep going on the new champion for a moment
    finally:
        stop.set()
        for w in workers:
            w.join()
    results = [r for s in seen for r in s]
    assert len(results) > 40
    assert all(status == 200 for status, _ in results), [r for r in results if r[0] != 200][:5]
    for s in seen:  # each client saw v1, then v2, and never v1 again
        versions = [v for _, v in s]
        assert versions[0] == "v1" and versions[-1] == "v2"
        assert versions == sorted(versions)
    with serve_app.client() as client:
        assert client.get("/v1/models/healthz").json()["model_version"] == "v2"


def test_every_prediction_reaches_the_delta_inference_log(serve_app: ServeApp) -> None:
    flights = real_flights(serve_app, 10)
    path = serve_app.lake.settings.table_path("bronze", "flight_delay_inferences")

    def logged() -> int:
        return DeltaTable(path).count() if DeltaTable.is_deltatable(path) else 0

    before = logged()
    with serve_app.client() as client:
        response = client.post(PREDICT, json=flights)
    assert response.status_code == 200
    deadline = time.monotonic() + 60
    while logged() < before + 10 and time.monotonic() < deadline:
        time.sleep(1)
    table = DeltaTable(path).to_pyarrow_table()
    assert table.num_rows >= before + 10
    assert {"request_id", "predicted_at", "request", "features", "delay_probability", "model_version", "latency_ms"} <= set(
        table.column_names
    )
    latest = table.sort_by([("predicted_at", "descending")]).slice(0, 10).to_pylist()
    assert {r["delay_probability"] for r in latest} == {p["delay_probability"] for p in response.json()["predictions"]}
