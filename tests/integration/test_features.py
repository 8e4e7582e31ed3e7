"""Ray Data features on two real weeks: point-in-time correct, Feast-served, submitted as a Ray job."""

from __future__ import annotations

import datetime as dt
import shutil

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from lake.io import path_of
from ray_jobs.features import FEATURE_TABLES, HISTORY_TABLES, label_and_keys
from tests.ml_support import LAST, MlLake, delta_frame, run

DAY = dt.date(2013, 1, 10)  # the day the leakage test tampers with


def silver_flights(ml: MlLake) -> pd.DataFrame:
    raw = delta_frame(ml.settings, "silver.flights")
    assert isinstance(raw, pd.DataFrame)
    return label_and_keys(raw, ml.settings.ml.delay_threshold_min)


def test_trailing_rates_use_only_the_days_before(featured: MlLake) -> None:
    flights = silver_flights(featured)
    carrier = delta_frame(featured.settings, "gold.carrier_features")
    assert isinstance(carrier, pd.DataFrame)
    row = carrier[(carrier["carrier"] == "UA") & (carrier["feature_date"] == DAY)].iloc[0]
    window = flights[(flights["carrier"] == "UA") & (flights["flight_date"] >= DAY - dt.timedelta(days=7))
                     & (flights["flight_date"] < DAY)]  # fmt: skip
    assert row["carrier_flights_7d"] == len(window)
    assert row["carrier_delay_rate_7d"] == pytest.approx(window["delayed"].mean())
    assert row["carrier_mean_delay_7d"] == pytest.approx(window["arr_delay"].mean())
    # Tomorrow's row exists (scoring needs it) and the first day has no history at all.
    assert carrier["feature_date"].max() == LAST + dt.timedelta(days=1)
    first = carrier[carrier["feature_date"] == carrier["feature_date"].min()]
    assert (first["carrier_flights_7d"] == 0).all() and first["carrier_delay_rate_7d"].isna().all()
    # Every flight has its context row.
    assert len(delta_frame(featured.settings, "gold.flight_features")) == len(flights)  # type: ignore[arg-type]


def test_tampering_with_a_day_changes_no_feature_of_that_day(
    featured: MlLake, spark: SparkSession, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Make day D's outcomes extreme in a copy of silver: features up to D must not move, D+1's must."""
    root = tmp_path_factory.mktemp("tampered") / "lake"
    shutil.copytree(featured.settings.lake_root + "/silver", root / "silver")
    tampered = featured.settings.model_copy(
        update={"lake": featured.settings.lake.model_copy(update={"root": str(root)})}
    )
    spark.sql(
        f"UPDATE delta.`{path_of(tampered, 'silver.flights')}` SET arr_delay = 999, cancelled = true "
        f"WHERE flight_date = DATE '{DAY.isoformat()}'"
    )
    run(MlLake(tampered, {**featured.env, "LAKEHOUSE_LAKE__ROOT": str(root)}), "features")
    for ft in HISTORY_TABLES:
        before = delta_frame(featured.settings, ft.table)
        after = delta_frame(tampered, ft.table)
        assert isinstance(before, pd.DataFrame) and isinstance(after, pd.DataFrame)
        key = [ft.entity, "feature_date"]
        merged = before.merge(after, on=key, suffixes=("", "_t"))
        assert len(merged) == len(before) == len(after)
        rate, rate_t = f"{ft.kind}_delay_rate_7d", f"{ft.kind}_delay_rate_7d_t"
        upto = merged[merged["feature_date"] <= DAY]
        pd.testing.assert_series_equal(upto[rate], upto[rate_t], check_names=False)
        nextday = merged[merged["feature_date"] == DAY + dt.timedelta(days=1)]
        assert (nextday[rate_t].fillna(0) > nextday[rate].fillna(0)).any(), f"{ft.table}: the test cannot see a leak"


def test_feast_training_join_picks_the_flights_local_day(featured: MlLake, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A 21:00 departure from New York is the next day in UTC; it must get its local day's features."""
    from features.store import historical, snapshot_store
    from ray_jobs.train import current_versions, entities

    versions = current_versions(featured.settings)
    store, views = snapshot_store(featured.settings, versions, str(tmp_path_factory.mktemp("feast")))
    flights = delta_frame(featured.settings, "silver.flights")
    assert isinstance(flights, pd.DataFrame)
    late = flights[(flights["flight_date"] == DAY) & (pd.to_datetime(flights["sched_dep_utc"]).dt.date > DAY)]
    assert not late.empty, "no late-evening flight on the test day"
    ents = entities(featured.settings, versions["silver.flights"])
    ents = ents[ents["flight_id"].isin(late["flight_id"])]
    got = historical(store, views, ents.drop(columns=["delayed"])).set_index("flight_id")
    carrier = delta_frame(featured.settings, "gold.carrier_features")
    assert isinstance(carrier, pd.DataFrame)
    expected = carrier[carrier["feature_date"] == DAY].set_index("carrier")["carrier_delay_rate_7d"]
    for flight_id, row in got.iterrows():
        assert row["carrier_delay_rate_7d"] == pytest.approx(expected[row["carrier"]]), flight_id


def test_online_store_serves_the_latest_day(featured: MlLake) -> None:
    from features.store import lake_store

    store = lake_store(featured.settings)
    online = store.get_online_features(features=["carrier:carrier_delay_rate_7d"], entity_rows=[{"carrier": "UA"}]).to_dict()
    carrier = delta_frame(featured.settings, "gold.carrier_features")
    assert isinstance(carrier, pd.DataFrame)
    latest = carrier[carrier["carrier"] == "UA"].sort_values("feature_date").iloc[-1]
    assert online["carrier_delay_rate_7d"][0] == pytest.approx(latest["carrier_delay_rate_7d"])


def test_feature_tables_declare_their_inputs() -> None:
    assert {ft.table for ft in FEATURE_TABLES} >= {"gold.carrier_features", "gold.flight_features"}
    flight = next(ft for ft in FEATURE_TABLES if ft.table == "gold.flight_features")
    assert set(flight.inputs) >= {"silver.flights", "silver.weather", "silver.planes"}


def test_feature_contracts_pass_and_a_broken_rate_stops_the_flow(
    featured: MlLake, spark: SparkSession, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The features flow's check: the real tables pass every contract; a rate of 1.5 fails it."""
    from quality import jobs, runner

    tables = [ft.table for ft in FEATURE_TABLES]
    outcomes = jobs.check(spark, featured.settings, tables)
    assert {o.table for o in outcomes} == set(tables)
    assert [o for o in outcomes if o.outcome == "failed"] == []
    root = tmp_path_factory.mktemp("broken-features") / "lake"
    shutil.copytree(featured.settings.lake_root + "/gold/carrier_features", root / "gold" / "carrier_features")
    broken = featured.settings.model_copy(update={"lake": featured.settings.lake.model_copy(update={"root": str(root)})})
    spark.sql(
        f"UPDATE delta.`{path_of(broken, 'gold.carrier_features')}` SET carrier_delay_rate_7d = 1.5 "
        f"WHERE carrier = 'UA' AND feature_date = DATE '{DAY.isoformat()}'"
    )
    with pytest.raises(runner.QualityGateError, match=r"gold\.carrier_features: check 'delay rate outside 0\.\.1' failed \(1 failing rows\)"):
        jobs.check(spark, broken, ["gold.carrier_features"])
