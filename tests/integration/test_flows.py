"""The Prefect flows against a real (temporary) Prefect server, on a two-day scratch lake.

`platform` runs with `ml=False, serve=False` here: its batch stages (ingest, stream, refine,
publish) on two days; features, training and serving need a Ray head and a split the two days
cannot hold, and the whole run is tests/e2e/test_platform_run.py.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lake import io
from lake.seed import seed
from lake.settings import Settings, get_settings


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="module")
def flow_lake(prefect_server: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Point the process settings (which flows read) at a scratch lake holding two days."""
    previous = os.environ["LAKEHOUSE_LAKE__ROOT"]
    os.environ["LAKEHOUSE_LAKE__ROOT"] = str(tmp_path_factory.mktemp("flows") / "lake")
    get_settings.cache_clear()
    settings = get_settings()
    seed(settings, dt.date(2013, 1, 1), dt.date(2013, 1, 2))
    yield settings
    os.environ["LAKEHOUSE_LAKE__ROOT"] = previous
    get_settings.cache_clear()


def versions(spark: SparkSession, settings: Settings) -> dict[str, int | None]:
    from lake.tables import registry

    return {name: io.version(spark, settings, name) for name in ["bronze.flights", *registry()]}


def test_platform_flow_builds_the_lake_and_publishes_artifacts(spark: SparkSession, flow_lake: Settings) -> None:
    from prefect.artifacts import Artifact

    from flows.platform import platform

    state = platform(ml=False, serve=False, return_state=True)
    assert state.is_completed(), state.message
    flights = io.read(spark, flow_lake, "silver.flights")
    assert flights.count() == 842 + 943
    assert io.read(spark, flow_lake, "gold.carrier_daily_performance").select("flight_date").distinct().count() == 2
    table = Artifact.get("tables-written")
    assert table is not None and "gold.route_monthly" in str(table.data)
    summary = Artifact.get("run-summary")
    assert summary is not None and "gold.carrier_daily_performance" in str(summary.data)


def test_second_platform_run_changes_nothing(spark: SparkSession, flow_lake: Settings) -> None:
    from flows.platform import platform

    before = versions(spark, flow_lake)
    assert platform(ml=False, serve=False, return_state=True).is_completed()
    assert versions(spark, flow_lake) == before


@pytest.mark.parametrize(
    ("overrides", "ml", "message"),
    [
        ({"LAKEHOUSE_STREAM__SOURCE": "kafka", "LAKEHOUSE_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:{port}"}, False,
         "stream.source is kafka but no broker answers at 127.0.0.1:{port}"),
        ({"LAKEHOUSE_RAY__ADDRESS": "http://127.0.0.1:{port}"}, True,
         "ray.address is http://127.0.0.1:{port} but no Ray dashboard answers"),
    ],
)  # fmt: skip
def test_platform_preflight_names_the_missing_service_before_any_work(
    spark: SparkSession,
    flow_lake: Settings,
    monkeypatch: pytest.MonkeyPatch,
    overrides: dict[str, str],
    ml: bool,
    message: str,
) -> None:
    from flows.platform import platform
    from ray_jobs.cluster import free_port

    port = str(free_port())  # nothing listens there
    before = versions(spark, flow_lake)
    for name, value in overrides.items():
        monkeypatch.setenv(name, value.format(port=port))
    get_settings.cache_clear()
    try:
        state = platform(ml=ml, serve=False, return_state=True)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()  # the next test's settings: the scratch lake's again
    assert state.is_failed()
    assert message.format(port=port) in str(state.result(raise_on_failure=False))
    assert versions(spark, flow_lake) == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": dt.date(2013, 1, 5), "end": dt.date(2013, 1, 1)}, "parameter `end`"),
        ({"start": dt.date(2013, 1, 5)}, "`start` and `end` go together"),
        ({"tables": ["gold.no_such_table"]}, "unknown table 'gold.no_such_table'"),
        ({"tables": ["silver.flights"]}, "silver.flights is a silver table"),
    ],
)
def test_bad_parameters_are_refused_before_any_work(
    spark: SparkSession, flow_lake: Settings, kwargs: dict[str, object], message: str
) -> None:
    from flows.publish import publish

    before = versions(spark, flow_lake)
    state = publish(return_state=True, **kwargs)  # type: ignore[arg-type]
    assert state.is_failed()
    assert message in str(state.message) or message in repr(state.result(raise_on_failure=False))
    assert versions(spark, flow_lake) == before


def test_publish_backfill_recomputes_the_range(spark: SparkSession, flow_lake: Settings) -> None:
    from flows.publish import publish

    before = io.version(spark, flow_lake, "gold.carrier_daily_performance")
    results = publish(tables=["gold.carrier_daily_performance"], start=dt.date(2013, 1, 2), end=dt.date(2013, 1, 2))
    assert [r.grains_recomputed for r in results] == [1]
    # The day was recomputed; its rows are unchanged, so nothing is committed (lake.io.replace_where).
    assert io.version(spark, flow_lake, "gold.carrier_daily_performance") == before


def test_maintain_compacts_and_refuses_short_retention(spark: SparkSession, flow_lake: Settings) -> None:
    from flows.maintain import maintain

    state = maintain(vacuum_retention_hours=1, return_state=True)
    assert state.is_failed() and "vacuum_retention_hours" in str(state.result(raise_on_failure=False))
    results = maintain(tables=["silver.flights", "bronze.flights"])
    assert {r["table"] for r in results} == {"silver.flights", "bronze.flights"}
    assert all(isinstance(r["version_after"], int) for r in results)
    assert Path(io.path_of(flow_lake, "silver.flights")).is_dir()
