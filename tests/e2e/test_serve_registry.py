"""The model endpoint on the registry path, over real HTTP: the stock serve/config.yaml
(`model_source: registry`) deployed with `lakehouse serve --detach` on the ML tests' Ray head,
serving the model `ray_jobs/train.py` trains on two real weeks, with features read from the Feast
online store the features job loaded.

Shown, in order (the module's tests share one Serve deployment and build on each other):
no champion yet -> 503 while health answers; the first trained champion is picked up without a
restart; the online store as the features job leaves it (tomorrow's history rows) serves
tomorrow's flights and never hands a flight a row from after its day; with the store loaded as of
the start of the last day, predictions equal the registered booster on the rows the batch path
joins from the gold feature tables; the custom metrics reach Ray's metrics endpoint; promote and
rollback under continuous requests fail none.

The module works on a copy of the shared ML lake (silver, gold, Feast), so its training, registry
changes and re-materialization never disturb tests/integration/test_features.py or
test_training.py, which share that lake.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import xgboost

from lake.settings import Settings
from ray_jobs import registry
from ray_jobs.features import FLIGHT_FEATURE_NAMES, HISTORY_TABLES, history_feature_names
from serve.deploy import free_port
from serve.model_app import FeastFeatureClient
from tests.e2e.conftest import ServeApp, ServeLake, lakehouse, serve_config
from tests.ml_support import LAST, MlLake, delta_frame, run

pytestmark = [pytest.mark.e2e, pytest.mark.ray, pytest.mark.slow]
PREDICT = "/v1/models/flight-delay/predict"
HEALTH = "/v1/models/healthz"
TOKEN = "registry-serve-token"
HISTORY = [n for ft in HISTORY_TABLES for n in history_feature_names(ft.kind)]


@pytest.fixture(scope="module")
def lake_copy(featured: MlLake, tmp_path_factory: pytest.TempPathFactory) -> MlLake:
    """The featured two-week lake's silver, gold and Feast store, copied: no model registry yet."""
    root = tmp_path_factory.mktemp("registry-serve") / "lake"
    for part in ("silver", "gold", "_feast"):
        shutil.copytree(Path(featured.settings.lake_root) / part, root / part)
    settings = featured.settings.model_copy(update={"lake": featured.settings.lake.model_copy(update={"root": str(root)})})
    return MlLake(settings, {**featured.env, "LAKEHOUSE_LAKE__ROOT": str(root)})


@pytest.fixture(scope="module")
def serving(lake_copy: MlLake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeApp]:
    """serve/config.yaml as shipped (model_source: registry), deployed by the CLI on the ML head.

    Only the replicas' CPU reservation changes (to 0): the head's 2 CPUs must stay free for the
    training job this module runs while Serve is up.
    """
    from ray_jobs.cluster import gcs_address

    address = gcs_address(lake_copy.settings)
    assert address, "the ML tests' Ray head recorded no GCS address"
    config = serve_config(tmp_path_factory.mktemp("registry-config"), {"champion_poll_s": 1}, num_cpus=0)
    port = free_port()
    environ = {
        **os.environ,
        **lake_copy.env,
        "RAY_ADDRESS": address,
        "RAY_AUTH_MODE": "token",  # the ML head runs with Ray's token auth (~/.ray/auth_token)
        "LAKEHOUSE_SERVE__PORT": str(port),
        "SERVE_AUTH_TOKEN": TOKEN,
    }
    started = lakehouse(environ, "serve", "--detach", "--config", str(config))
    assert started.returncode == 0, started.stderr[-4000:]
    try:
        yield ServeApp(f"http://127.0.0.1:{port}", TOKEN, environ, ServeLake(lake_copy.settings, {}))
    finally:
        lakehouse(environ, "serve", "--stop", timeout=120)


@pytest.fixture(scope="module")
def champion(serving: ServeApp, lake_copy: MlLake) -> registry.ModelRecord:
    """Model 1, trained and registered by the training job while Serve runs, then picked up."""
    run(lake_copy, "train")
    record = registry.champion(lake_copy.settings)
    assert record is not None and record.model_version == 1
    wait_for_version(serving, str(record.model_version))
    return record


@pytest.fixture(scope="module")
def store_as_of_last_day(lake_copy: MlLake, champion: registry.ModelRecord) -> dt.date:
    """The online store as the features job would have left it at the start of the last day: every
    key's row of that day (the job's own run loaded tomorrow's history rows, which count it)."""
    from features.store import lake_store

    start = dt.datetime.combine(LAST - dt.timedelta(days=6), dt.time(), dt.UTC)
    lake_store(lake_copy.settings).materialize(start_date=start, end_date=dt.datetime.combine(LAST, dt.time(), dt.UTC))
    return LAST


def wait_for_version(app: ServeApp, version: str, wait_s: float = 120) -> None:
    deadline = time.monotonic() + wait_s
    with app.client() as client:
        while (health := client.get(HEALTH).json())["model_version"] != version:
            assert time.monotonic() < deadline, f"model {version} not served after {wait_s:.0f}s: {health}"
            time.sleep(1)


def flights_of(settings: Settings, day: dt.date, n: int) -> pd.DataFrame:
    """`n` real flights of `day` spread over it, plus the late-evening ones whose UTC date is the next day."""
    flights = delta_frame(settings, "silver.flights")
    assert isinstance(flights, pd.DataFrame)
    flights = flights[flights["flight_date"] == day].sort_values(["sched_dep_utc", "flight_id"])
    late = flights[pd.to_datetime(flights["sched_dep_utc"]).dt.date > day].head(3)
    assert not late.empty, "no departure after midnight UTC on the day"
    picked = pd.concat([flights.iloc[:: max(1, len(flights) // n)].head(n), late]).drop_duplicates("flight_id")
    return picked.reset_index(drop=True)


def body(row: Any, day_shift: int = 0) -> dict[str, Any]:
    departure = pd.Timestamp(row["sched_dep_utc"]).to_pydatetime() + dt.timedelta(days=day_shift)
    return {
        "carrier": row["carrier"], "flight": int(row["flight"]), "origin": row["origin"], "dest": row["dest"],
        "sched_dep_utc": departure.astimezone(dt.UTC).isoformat(), "tailnum": row["tailnum"],
    }  # fmt: skip


def batch_rows(settings: Settings, day: dt.date, flight_ids: list[str]) -> pd.DataFrame:
    """The feature rows batch scoring uses (ray_jobs/score.py): each flight's flight_features row
    joined to the history tables' rows of its day, by entity key and feature date."""
    flights = delta_frame(settings, "gold.flight_features")
    assert isinstance(flights, pd.DataFrame)
    frame = flights[(flights["feature_date"] == day) & flights["flight_id"].isin(flight_ids)]
    for ft in HISTORY_TABLES:
        history = delta_frame(settings, ft.table)
        assert isinstance(history, pd.DataFrame)
        history = history[history["feature_date"] == day].drop(columns="event_ts")
        frame = frame.drop(columns="event_ts", errors="ignore").merge(history, on=[ft.entity, "feature_date"], how="left")
    assert len(frame) == len(flight_ids)
    return frame.set_index("flight_id")


def booster_probabilities(record: registry.ModelRecord, rows: pd.DataFrame) -> np.ndarray:
    """What the registered booster gives, scored as batch scoring scores (its best iteration)."""
    booster = registry.load_model(record)
    x = rows[list(booster.feature_names or [])].astype("float64")
    return np.asarray(booster.predict(xgboost.DMatrix(x), iteration_range=(0, int(record.config["best_iteration"]) + 1)))


def test_without_a_champion_the_app_starts_and_predict_answers_503(serving: ServeApp) -> None:
    with serving.client() as client:
        health = client.get(HEALTH)
        flight = {"carrier": "UA", "flight": 1545, "origin": "EWR", "dest": "IAH", "sched_dep_utc": "2013-01-15T10:15:00"}
        response = client.post(PREDICT, json=flight)
    assert health.status_code == 200 and health.json()["model_version"] is None
    assert response.status_code == 503
    assert "no champion model has been promoted yet" in response.json()["error"]


def test_the_first_champion_is_served_without_a_restart(serving: ServeApp, champion: registry.ModelRecord) -> None:
    with serving.client() as client:
        health = client.get(HEALTH).json()
    assert health["model_version"] == str(champion.model_version) and health["problem"] is None
    assert champion.feature_service == "delay_model_v1"


def test_the_online_store_as_the_features_job_left_it(
    serving: ServeApp, lake_copy: MlLake, champion: registry.ModelRecord
) -> None:
    """Its history rows are tomorrow's (LAST + 1): tomorrow's flights get them, with the calendar
    computed from the request; a flight of LAST keeps its own flight row but never tomorrow's
    history, which counts its own outcome."""
    settings = lake_copy.settings
    today = flights_of(settings, LAST, 6)
    tomorrow = LAST + dt.timedelta(days=1)
    with serving.client() as client:
        ahead = client.post(PREDICT, json=[body(r, day_shift=1) for _, r in today.iterrows()])
        now = client.post(PREDICT, json=[body(r) for _, r in today.iterrows()])
    assert ahead.status_code == 200 and now.status_code == 200, (ahead.text, now.text)
    booster = registry.load_model(champion)
    best = int(champion.config["best_iteration"])
    for (_, row), prediction in zip(today.iterrows(), ahead.json()["predictions"], strict=True):
        features = prediction["features"]
        assert list(features) == list(booster.feature_names or [])  # the model's own order
        keys = {"carrier": row["carrier"], "route": f"{row['origin']}-{row['dest']}", "origin": row["origin"],
                "carrier_route": f"{row['carrier']}:{row['origin']}-{row['dest']}"}  # fmt: skip
        for ft in HISTORY_TABLES:
            table = delta_frame(settings, ft.table)
            assert isinstance(table, pd.DataFrame)
            gold = table[(table[ft.entity] == keys[ft.entity]) & (table["feature_date"] == tomorrow)].iloc[0]
            for name in history_feature_names(ft.kind):
                assert features[name] == (None if pd.isna(gold[name]) else pytest.approx(gold[name])), name
        local = pd.Timestamp(body(row, day_shift=1)["sched_dep_utc"]).tz_convert("America/New_York")
        assert (features["dep_hour"], features["weekday"], features["month"]) == (local.hour, local.weekday(), local.month)
        assert features["days_to_holiday"] == 6  # Martin Luther King Day, 2013-01-21
        no_row = set(FLIGHT_FEATURE_NAMES) - set(FeastFeatureClient.CALENDAR)
        assert no_row <= set(prediction["missing_features"]), "only the calendar follows from the request"
        vector = np.array([[np.nan if v is None else v for v in features.values()]], dtype=np.float32)
        expected = float(booster.inplace_predict(vector, iteration_range=(0, best + 1))[0])
        assert prediction["delay_probability"] == pytest.approx(expected, abs=1e-6)
    rows = batch_rows(settings, LAST, list(today["flight_id"]))  # only its flight_features columns are compared
    for flight_id, prediction in zip(today["flight_id"], now.json()["predictions"], strict=True):
        missing = set(prediction["missing_features"])
        assert set(HISTORY) <= missing, flight_id  # tomorrow's history rows are after its day: never used
        for name in FLIGHT_FEATURE_NAMES:  # its own flight_features row is
            gold = rows.loc[flight_id, name]
            assert prediction["features"][name] == (None if pd.isna(gold) else gold), (flight_id, name)


def test_predictions_equal_the_registered_booster_on_the_batch_rows(
    serving: ServeApp, lake_copy: MlLake, champion: registry.ModelRecord, store_as_of_last_day: dt.date
) -> None:
    settings = lake_copy.settings
    flights = flights_of(settings, store_as_of_last_day, 30)
    with serving.client() as client:
        many = client.post(PREDICT, json=[body(r) for _, r in flights.iterrows()])
        one = client.post(PREDICT, json=body(flights.iloc[-1]))
    assert many.status_code == 200, many.text
    predictions = many.json()["predictions"]
    assert one.json()["predictions"] == predictions[-1:]
    rows = batch_rows(settings, store_as_of_last_day, list(flights["flight_id"]))
    expected = booster_probabilities(champion, rows.loc[flights["flight_id"]])
    for flight_id, prediction, probability in zip(flights["flight_id"], predictions, expected, strict=True):
        assert prediction["model_version"] == str(champion.model_version)
        gold = rows.loc[flight_id]
        for name, value in prediction["features"].items():
            assert value == (None if pd.isna(gold[name]) else gold[name]), (flight_id, name)
        assert prediction["missing_features"] == [n for n, v in prediction["features"].items() if v is None]
        assert prediction["delay_probability"] == pytest.approx(float(probability), abs=1e-6), flight_id
    assert len({p["delay_probability"] for p in predictions}) > 1  # the features matter


def test_unknown_origin_is_422_naming_the_field(serving: ServeApp, champion: registry.ModelRecord) -> None:
    flight = {"carrier": "UA", "flight": 1, "origin": "ZZZ", "dest": "IAH", "sched_dep_utc": "2013-01-15T10:00:00"}
    with serving.client() as client:
        single = client.post(PREDICT, json=flight)
        listed = client.post(PREDICT, json=[{**flight, "origin": "EWR"}, flight])
    assert single.status_code == 422 and single.json()["field"] == "origin" and "ZZZ" in single.json()["error"]
    assert listed.status_code == 422 and listed.json()["field"] == "1.origin"


def test_custom_serve_metrics_reach_rays_metrics_endpoint(
    serving: ServeApp, lake_copy: MlLake, champion: registry.ModelRecord
) -> None:
    """The dashboards' batch-size histogram and model-version gauge, and the inference backlog gauge."""
    url = f"http://127.0.0.1:{lake_copy.settings.ray.dashboard_port + 3}/metrics"  # the head's metrics-export port
    flight = body(flights_of(lake_copy.settings, LAST, 1).iloc[0])
    wanted = ("ray_lakehouse_serve_batch_size_bucket", "ray_lakehouse_serve_model_info", "ray_lakehouse_serve_inference_log_pending")
    deadline = time.monotonic() + 120
    with serving.client() as client:
        while True:
            assert client.post(PREDICT, json=flight).status_code == 200
            text = httpx.get(url, timeout=10).text
            if all(name in text for name in wanted):
                break
            assert time.monotonic() < deadline, f"missing from {url}: {[n for n in wanted if n not in text]}"
            time.sleep(2)
    info = [line for line in text.splitlines() if line.startswith("ray_lakehouse_serve_model_info{")]
    assert any(f'model_version="{champion.model_version}"' in line and line.endswith(" 1.0") for line in info), info


def register_smaller_model(settings: Settings, champion: registry.ModelRecord) -> registry.ModelRecord:
    """Model 2: the champion's first half of trees, a different booster, registered as train.py
    registers (artifact, FeatureService, ml.models row); its lower AUC keeps it from the champion role."""
    from features.services import service_name
    from features.store import register_service

    rounds = max(1, (int(champion.config["best_iteration"]) + 1) // 2)
    version = registry.next_version(settings)
    booster = registry.load_model(champion)[:rounds]
    artifact = registry.save_artifact(settings, version, booster, {"derived_from": champion.model_version, "rounds": rounds})
    candidate = dataclasses.replace(
        champion,
        model_version=version,
        created_at=dt.datetime.now(dt.UTC),
        metrics={**champion.metrics, "auc": champion.test_auc - 0.01},
        feast_registry_version=register_service(settings, version),
        feature_service=service_name(version),
        artifact_uri=artifact,
        config={**champion.config, "best_iteration": rounds - 1},
        champion=False,
        promoted_at=None,
    )
    recorded = registry.record(settings, candidate)
    assert not recorded.champion
    return recorded


def test_promote_and_rollback_under_continuous_requests_fail_nothing(
    serving: ServeApp, lake_copy: MlLake, champion: registry.ModelRecord, store_as_of_last_day: dt.date
) -> None:
    settings = lake_copy.settings
    second = register_smaller_model(settings, champion)
    flights = flights_of(settings, store_as_of_last_day, 4).head(4)
    rows = batch_rows(settings, store_as_of_last_day, list(flights["flight_id"]))
    expected = {
        str(record.model_version): dict(zip(flights["flight_id"], booster_probabilities(record, rows.loc[flights["flight_id"]]), strict=True))
        for record in (champion, second)
    }  # fmt: skip
    assert expected["1"] != expected["2"]
    seen: list[list[tuple[int, str, float]]] = [[] for _ in range(len(flights))]
    stop = threading.Event()

    def hammer(worker: int) -> None:
        request = body(flights.iloc[worker])
        with serving.client() as client:
            while not stop.is_set():
                try:
                    response = client.post(PREDICT, json=request)
                    answer = response.json()["predictions"][0]
                    seen[worker].append((response.status_code, answer["model_version"], answer["delay_probability"]))
                except (httpx.HTTPError, KeyError, ValueError) as exc:
                    seen[worker].append((0, repr(exc), float("nan")))

    def all_on(version: str) -> None:
        deadline = time.monotonic() + 90
        while not all(s and s[-1][1] == version for s in seen):
            assert time.monotonic() < deadline, f"not every client moved to model {version}"
            time.sleep(0.5)
        time.sleep(2)  # and keep going on it for a moment

    workers = [threading.Thread(target=hammer, args=(i,)) for i in range(len(flights))]
    for w in workers:
        w.start()
    try:
        time.sleep(3)
        promoted = lakehouse(serving.environ, "models", "promote", str(second.model_version))
        assert promoted.returncode == 0, promoted.stderr
        all_on("2")
        rolled_back = lakehouse(serving.environ, "models", "rollback")
        assert rolled_back.returncode == 0, rolled_back.stderr
        all_on("1")
    finally:
        stop.set()
        for w in workers:
            w.join()
    results = [r for s in seen for r in s]
    assert len(results) > 40
    assert all(status == 200 for status, _, _ in results), [r for r in results if r[0] != 200][:5]
    for worker, s in enumerate(seen):  # 1, then 2, then 1 again: each swap happens once per client
        versions = [v for _, v, _ in s]
        changes = [versions[0]] + [b for a, b in itertools.pairwise(versions) if a != b]
        assert changes == ["1", "2", "1"], changes
        flight_id = flights["flight_id"].iloc[worker]
        for _, version, probability in s:  # each answer is its model's, on the batch rows
            assert probability == pytest.approx(float(expected[version][flight_id]), abs=1e-6)
    assert registry.champion(settings).model_version == champion.model_version  # type: ignore[union-attr]
