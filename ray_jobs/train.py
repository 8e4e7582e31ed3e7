"""Train the flight-delay model with Ray Train's XGBoostTrainer and register it.

The training set comes from Feast's point-in-time historical retrieval over the feature
tables at pinned Delta versions (a snapshot store), labels from silver.flights at its pinned
version. Time split from settings (`ml.train_start..train_end` train, `..valid_end` validate
with early stopping, `..test_end` test). Test metrics are reported against two baselines: the
training base rate, and the trailing 28-day carrier-route delay rate alone.

`python -m ray_jobs.train` trains on the latest versions and records the model;
`python -m ray_jobs.train --from-model N` retrains from model N's pins and compares AUCs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lake.settings import Settings, get_settings, join
from ray_jobs import registry
from ray_jobs.features import (
    FEATURE_TABLES,
    INPUT_TABLES,
    cutoff_ts,
    delta_table,
    delta_version,
    feature_names,
    is_remote,
    label_and_keys,
    lake_filesystem,
)

if TYPE_CHECKING:
    import xgboost

LABEL = "delayed"
CHECKPOINT_EVERY = 25  # boosting rounds between Ray Train checkpoints
CHAOS_SETTLE_S = 5.0  # the controller registers the checkpoint before the kill
BASELINE_FEATURE = "carrier_route_delay_rate_28d"
PINNED_TABLES = (*INPUT_TABLES, *(ft.table for ft in FEATURE_TABLES))


@dataclass(frozen=True)
class TrainResult:
    booster: xgboost.Booster
    metrics: dict[str, float]
    calibration: list[dict[str, Any]]
    best_iteration: int
    rows: dict[str, int]


def current_versions(settings: Settings) -> dict[str, int]:
    return {t: delta_version(settings, t) for t in PINNED_TABLES}


def entities(settings: Settings, version: int) -> pd.DataFrame:
    """Every flight in the split's range with its entity keys, cutoff and label."""
    ml = settings.ml
    cols = ["flight_id", "flight_date", "carrier", "origin", "dest", "arr_delay", "cancelled", "diverted"]
    raw = delta_table(settings, "silver.flights", version).to_pandas(columns=cols)
    raw = raw[(raw["flight_date"] >= ml.train_start) & (raw["flight_date"] <= ml.test_end)]
    df = label_and_keys(raw, ml.delay_threshold_min)
    df["event_timestamp"] = cutoff_ts(df["flight_date"])
    keys = ["flight_id", "carrier", "route", "origin", "carrier_route", "event_timestamp", "flight_date", LABEL]
    return df[keys].sort_values("flight_id").reset_index(drop=True)


def training_set(settings: Settings, versions: dict[str, int], workdir: str) -> pd.DataFrame:
    """Labels joined point-in-time to features through Feast, over a snapshot of `versions`."""
    from features.store import historical, snapshot_store

    store, views = snapshot_store(settings, versions, workdir)
    frame = historical(store, views, entities(settings, versions["silver.flights"]))
    return frame.sort_values("flight_id").reset_index(drop=True)


def split(frame: pd.DataFrame, settings: Settings) -> dict[str, pd.DataFrame]:
    ml = settings.ml
    date = pd.to_datetime(frame["flight_date"]).dt.date
    parts = {
        "train": frame[(date >= ml.train_start) & (date <= ml.train_end)],
        "valid": frame[(date > ml.train_end) & (date <= ml.valid_end)],
        "test": frame[(date > ml.valid_end) & (date <= ml.test_end)],
    }
    for name, part in parts.items():
        if part.empty or part[LABEL].nunique() < 2:
            raise ValueError(f"the {name} split has no rows or one class only: check ml.train_start..ml.test_end")
    return parts


def matrix(part: pd.DataFrame) -> pd.DataFrame:
    return part[[*feature_names(), LABEL]].astype("float64").reset_index(drop=True)


def _train_loop(config: dict[str, Any]) -> None:
    """Per Ray Train worker: its shard as a DMatrix, xgboost over the collective, checkpoints."""
    import ray.train
    import xgboost
    from ray.train.xgboost import RayTrainReportCallback

    def dmatrix(name: str) -> xgboost.DMatrix:
        df = ray.train.get_dataset_shard(name).materialize().to_pandas()
        return xgboost.DMatrix(df.drop(columns=[LABEL]), label=df[LABEL])

    dtrain, dvalid = dmatrix("train"), dmatrix("valid")
    start = None
    rounds = config["num_boost_round"]
    checkpoint = ray.train.get_checkpoint()
    callbacks: list[xgboost.callback.TrainingCallback] = [
        RayTrainReportCallback(metrics=["valid-logloss", "valid-auc"], frequency=CHECKPOINT_EVERY)
    ]
    if checkpoint:  # a restarted worker group resumes from the latest checkpoint
        start = RayTrainReportCallback.get_model(checkpoint)
        rounds -= start.num_boosted_rounds()
        print(f"resuming from the checkpoint at round {start.num_boosted_rounds()}", flush=True)
    elif config.get("chaos_kill") and ray.train.get_context().get_world_rank() == 0:
        callbacks.append(_kill_after_first_checkpoint())
    xgboost.train(
        config["params"],
        dtrain,
        num_boost_round=max(rounds, 1),
        evals=[(dvalid, "valid")],
        early_stopping_rounds=config["early_stopping_rounds"],
        xgb_model=start,
        callbacks=callbacks,
        verbose_eval=False,
    )


def _kill_after_first_checkpoint() -> xgboost.callback.TrainingCallback:
    """The failure drill's callback (xgboost is imported on the worker only)."""
    import os
    import signal
    import time

    import xgboost

    class KillAfterFirstCheckpoint(xgboost.callback.TrainingCallback):
        def after_iteration(self, model: xgboost.Booster, epoch: int, evals_log: dict[str, Any]) -> bool:
            if epoch + 1 == CHECKPOINT_EVERY:  # the report callback ran first: the checkpoint is saved
                time.sleep(CHAOS_SETTLE_S)
                print(f"failure drill: worker 0 is killed after the checkpoint at round {epoch + 1}", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            return False

    return KillAfterFirstCheckpoint()


def fit_ray(settings: Settings, parts: dict[str, pd.DataFrame], storage: str, name: str) -> xgboost.Booster:
    """Distributed training: `ml.num_workers` workers, checkpoints in the lake, failures retried.

    Workers are spread over the cluster's nodes (SPREAD; a single node simply holds them all):
    each gets a node's memory, and a lost node costs one worker, not all. Checkpoints and run
    state go to the lake, local or on the object store, which every node reaches.
    """
    import ray.data
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.xgboost import RayTrainReportCallback, XGBoostTrainer

    from ray_jobs.features import quiet_ray_data

    quiet_ray_data()
    ml = settings.ml
    # pyarrow knows no s3a:// and no custom endpoint: on the object store, Ray Train gets the lake's filesystem.
    filesystem, path = lake_filesystem(settings, storage) if is_remote(storage) else (None, storage)
    trainer = XGBoostTrainer(
        _train_loop,
        train_loop_config={
            "params": {**ml.params, "nthread": 1},
            "num_boost_round": ml.num_boost_round,
            "early_stopping_rounds": ml.early_stopping_rounds,
            "chaos_kill": ml.chaos_kill_worker,
        },
        scaling_config=ScalingConfig(
            num_workers=ml.num_workers, resources_per_worker={"CPU": 1}, placement_strategy="SPREAD"
        ),
        run_config=RunConfig(
            name=name,
            storage_path=path,
            storage_filesystem=filesystem,
            failure_config=FailureConfig(max_failures=2),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
        datasets={k: ray.data.from_pandas(matrix(parts[k])) for k in ("train", "valid")},
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train finished without a checkpoint: {result.error}")
    return RayTrainReportCallback.get_model(result.checkpoint)


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve: the chance a random positive scores above a random negative (ties half)."""
    ranks = pd.Series(p).rank(method="average").to_numpy()
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both classes in the test set")
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def evaluate(booster: xgboost.Booster, parts: dict[str, pd.DataFrame]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Test AUC, log loss, Brier and a 10-bin calibration table, with both baselines."""
    import xgboost

    test = matrix(parts["test"])
    y = test[LABEL].to_numpy()
    p = booster.predict(xgboost.DMatrix(test.drop(columns=[LABEL])), iteration_range=(0, booster.best_iteration + 1))
    base = float(parts["train"][LABEL].mean())
    route = test[BASELINE_FEATURE].fillna(base).clip(1e-6, 1 - 1e-6).to_numpy()

    def scores(pred: np.ndarray, prefix: str) -> dict[str, float]:
        pred = np.clip(pred, 1e-6, 1 - 1e-6)
        return {f"{prefix}auc": roc_auc(y, pred), f"{prefix}log_loss": log_loss(y, pred),
                f"{prefix}brier": float(np.mean((pred - y) ** 2))}  # fmt: skip

    metrics = {**scores(p, ""), **scores(np.full_like(p, base), "base_rate_"), **scores(route, "carrier_route_rate_")}
    metrics["test_rows"] = float(len(y))
    metrics["test_positive_rate"] = float(y.mean())
    bins = np.minimum((p * 10).astype(int), 9)
    calibration = [
        {"bin": f"{b / 10:.1f}-{(b + 1) / 10:.1f}", "rows": int((bins == b).sum()),
         "mean_predicted": float(p[bins == b].mean()), "observed_rate": float(y[bins == b].mean())}
        for b in range(10) if (bins == b).any()
    ]  # fmt: skip
    return metrics, calibration


def train(settings: Settings, versions: dict[str, int], run_name: str) -> TrainResult:
    with tempfile.TemporaryDirectory(prefix="lakehouse-train-") as workdir:
        frame = training_set(settings, versions, workdir)
    parts = split(frame, settings)
    booster = fit_ray(settings, parts, join(settings.lake_root, "_ray", "train"), run_name)
    metrics, calibration = evaluate(booster, parts)
    return TrainResult(
        booster=booster,
        metrics=metrics,
        calibration=calibration,
        best_iteration=int(booster.best_iteration),
        rows={k: len(v) for k, v in parts.items()},
    )


def train_and_record(settings: Settings, versions: dict[str, int] | None = None) -> registry.ModelRecord:
    """Train on `versions` (default: the latest), save the artifact, register the model."""
    from features.services import service_name
    from features.store import register_service

    versions = versions or current_versions(settings)
    model_version = registry.next_version(settings)
    result = train(settings, versions, f"delay_model_v{model_version}")
    ml = settings.ml
    config = {
        "train_start": ml.train_start, "train_end": ml.train_end, "valid_end": ml.valid_end, "test_end": ml.test_end,
        "num_workers": ml.num_workers, "num_boost_round": ml.num_boost_round,
        "early_stopping_rounds": ml.early_stopping_rounds, "best_iteration": result.best_iteration,
        "rows": result.rows, "delay_threshold_min": ml.delay_threshold_min, "features": feature_names(),
    }  # fmt: skip
    artifact = registry.save_artifact(
        settings, model_version, result.booster, {"metrics": result.metrics, "calibration": result.calibration, **config}
    )
    candidate = registry.ModelRecord(
        model_version=model_version,
        created_at=dt.datetime.now(dt.UTC),
        git_revision=registry.git_revision(),
        params=dict(ml.params),
        metrics=result.metrics,
        input_versions=versions,
        feast_registry_version=register_service(settings, model_version),
        feature_service=service_name(model_version),
        artifact_uri=artifact,
        config=json.loads(json.dumps(config, default=str)),
    )
    return registry.record(settings, candidate)


def retrain_from(settings: Settings, model_version: int) -> tuple[registry.ModelRecord, TrainResult]:
    """Retrain with a registered model's pins, split and params (nothing is recorded)."""
    pinned = registry.get(settings, model_version)
    c = pinned.config
    ml = settings.ml.model_copy(
        update={
            "train_start": dt.date.fromisoformat(c["train_start"]), "train_end": dt.date.fromisoformat(c["train_end"]),
            "valid_end": dt.date.fromisoformat(c["valid_end"]), "test_end": dt.date.fromisoformat(c["test_end"]),
            "num_workers": c["num_workers"], "num_boost_round": c["num_boost_round"],
            "early_stopping_rounds": c["early_stopping_rounds"], "params": pinned.params,
            "delay_threshold_min": c["delay_threshold_min"],
        }
    )  # fmt: skip
    pinned_settings = settings.model_copy(update={"ml": ml})
    return pinned, train(pinned_settings, pinned.input_versions, f"delay_model_v{model_version}_retrain")


def main(argv: list[str] | None = None) -> None:
    from ray_jobs.cluster import init_ray

    parser = argparse.ArgumentParser(prog="python -m ray_jobs.train", description=__doc__.splitlines()[0])
    parser.add_argument("--from-model", type=int, help="retrain from this model's pinned versions and compare")
    args = parser.parse_args(argv)
    settings = get_settings()
    init_ray(settings)
    if args.from_model:
        pinned, result = retrain_from(settings, args.from_model)
        delta = abs(result.metrics["auc"] - pinned.test_auc)
        print(json.dumps({"model_version": pinned.model_version, "registered_auc": pinned.test_auc,
                          "retrained_auc": result.metrics["auc"], "difference": delta}))  # fmt: skip
        if delta > 0.001:
            raise SystemExit(f"retraining model {args.from_model} from its pins moved test AUC by {delta:.4f}")
        return
    record = train_and_record(settings)
    print(json.dumps({"model_version": record.model_version, "champion": record.champion, "metrics": record.metrics}))


if __name__ == "__main__":
    from lake.process import run_then_exit

    run_then_exit(main)  # a finished job must not abort in native teardown (lake/process.py)
