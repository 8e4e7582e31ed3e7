"""Ray Train XGBoost, the registry and batch scoring on two real weeks, as Ray jobs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from lake.io import path_of
from ray_jobs import registry
from ray_jobs.train import PINNED_TABLES
from tests.ml_support import SMALL_MODEL, MlLake, delta_frame, run


@pytest.fixture(scope="module")
def trained(featured: MlLake) -> registry.ModelRecord:
    run(featured, "train")
    champion = registry.champion(featured.settings)
    assert champion is not None
    return champion


def test_training_registers_a_reproducible_champion(featured: MlLake, trained: registry.ModelRecord) -> None:
    assert trained.model_version == 1 and trained.champion
    assert set(trained.input_versions) == set(PINNED_TABLES)
    for name in ("auc", "log_loss", "brier", "base_rate_auc", "carrier_route_rate_auc"):
        assert 0 < trained.metrics[name] < 1, name
    assert trained.metrics["auc"] > 0.55  # learnt something even from eight days
    assert trained.feature_service == "delay_model_v1" and trained.feast_registry_version
    booster = registry.load_model(trained)
    assert booster.num_features() == len(trained.config["features"])
    # Retraining from the pins (a Ray job) fails itself if AUC moves by more than 0.001.
    out = json.loads(next(line for line in run(featured, "train", "--from-model", "1") if line.startswith("{")))
    assert abs(out["retrained_auc"] - trained.test_auc) <= 0.001


def test_worse_model_is_not_promoted_then_promote_and_rollback(featured: MlLake, trained: registry.ModelRecord) -> None:
    worse = dataclasses.replace(
        trained,
        model_version=registry.next_version(featured.settings),
        metrics={**trained.metrics, "auc": trained.test_auc - 0.05},
        champion=False,
        promoted_at=None,
    )
    recorded = registry.record(featured.settings, worse)
    assert not recorded.champion
    assert registry.champion(featured.settings).model_version == trained.model_version  # type: ignore[union-attr]
    registry.promote(featured.settings, worse.model_version)
    assert registry.champion(featured.settings).model_version == worse.model_version  # type: ignore[union-attr]
    registry.rollback(featured.settings)
    assert registry.champion(featured.settings).model_version == trained.model_version  # type: ignore[union-attr]
    with pytest.raises(registry.RegistryError, match="not registered"):
        registry.promote(featured.settings, 999)


def test_batch_scoring_names_the_model_on_every_row(
    featured: MlLake, trained: registry.ModelRecord, spark: SparkSession
) -> None:
    from quality import jobs

    run(featured, "score", "--start", "2013-01-13", "--end", "2013-01-14")
    scored = delta_frame(featured.settings, "gold.delay_predictions")
    assert isinstance(scored, pd.DataFrame)
    flights = delta_frame(featured.settings, "silver.flights")
    assert isinstance(flights, pd.DataFrame)
    days = flights[flights["flight_date"].isin([dt.date(2013, 1, 13), dt.date(2013, 1, 14)])]
    assert sorted(scored["flight_id"]) == sorted(days["flight_id"])
    assert (scored["model_version"] == trained.model_version).all()
    assert scored["delay_probability"].between(0, 1).all()
    run(featured, "score", "--start", "2013-01-13", "--end", "2013-01-14")  # a rerun replaces, never duplicates
    assert len(delta_frame(featured.settings, "gold.delay_predictions")) == len(days)  # type: ignore[arg-type]
    checked = jobs.check(spark, featured.settings, ["gold.delay_predictions"])  # what the score flow runs
    assert checked and all(c.outcome != "failed" for c in checked)


def test_vacuum_keeps_versions_a_model_pins(featured: MlLake, trained: registry.ModelRecord, spark: SparkSession) -> None:
    from deltalake import DeltaTable

    from ray_jobs.features import write

    table = "gold.carrier_features"
    pinned = trained.input_versions[table]
    path = path_of(featured.settings, table)
    current = DeltaTable(path).to_pyarrow_table()
    write(featured.settings, {table: current})  # a full rewrite: the pinned version's files become garbage
    assert registry.retention_hours(featured.settings, "gold.route_monthly", 0) == 0  # not pinned
    keep = registry.protect_pins(spark, featured.settings, table, 0)
    assert keep >= 1
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    try:
        spark.sql(f"VACUUM delta.`{path}` RETAIN {keep} HOURS")
        assert DeltaTable(path, version=pinned).to_pyarrow_table().num_rows == current.num_rows
        # Without the pin's protection the same VACUUM makes the version unreadable.
        spark.sql(f"VACUUM delta.`{path}` RETAIN 0 HOURS")
        with pytest.raises(Exception):  # noqa: B017 - delta-rs raises its own error types for missing files
            DeltaTable(path, version=pinned).to_pyarrow_table()
    finally:
        spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "true")


def test_a_killed_training_worker_resumes_from_its_checkpoint(featured: MlLake, trained: registry.ModelRecord) -> None:
    """Worker 0 SIGKILLs itself after the first checkpoint: FailureConfig restarts the worker group,
    training resumes from that checkpoint (not round 0) and the job still registers its model."""
    from ray_jobs.train import CHECKPOINT_EVERY

    # No early stop, so the run reaches its first checkpoint on two weeks of data.
    drill = MlLake(featured.settings, {**featured.env, "LAKEHOUSE_ML__CHAOS_KILL_WORKER": "true", "LAKEHOUSE_ML__EARLY_STOPPING_ROUNDS": "1000"})
    before = max(m.model_version for m in registry.models(featured.settings))
    log = run(drill, "train")
    killed = [line for line in log if f"worker 0 is killed after the checkpoint at round {CHECKPOINT_EVERY}" in line]
    resumed = [line for line in log if f"resuming from the checkpoint at round {CHECKPOINT_EVERY}" in line]
    assert killed, "\n".join(log[-60:])  # (Ray may echo a worker's line twice in the job log)
    assert resumed, "\n".join(log[-60:])
    record = registry.models(featured.settings)[0]
    assert record.model_version == before + 1 and record.metrics["auc"] > 0.55
    # 25 rounds before the kill + the rest after it: exactly the configured rounds, none twice.
    assert registry.load_model(record).num_boosted_rounds() == int(SMALL_MODEL["num_boost_round"])
