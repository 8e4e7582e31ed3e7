"""Batch scoring: the champion model over scheduled flights, into gold.delay_predictions.

A Ray Data job over gold.flight_features for the chosen days: each batch joins the history
feature tables of those days (by entity key and feature date: the features as of the start of
the flight's day, exactly what training saw) and predicts with the champion. Every row names
the model version; the days scored are replaced in one Delta commit, so a rerun is idempotent.
`python -m ray_jobs.score [--start D --end D]` (default: the latest day with features).
"""

from __future__ import annotations

import argparse
import datetime as dt
from functools import partial
from typing import TYPE_CHECKING, Any

import pandas as pd

from lake.io import path_of, storage_options
from lake.settings import Settings, get_settings
from ray_jobs import registry
from ray_jobs.features import HISTORY_TABLES, delta_table, feature_names, history_feature_names, quiet_ray_data

if TYPE_CHECKING:
    import pyarrow as pa

TABLE = "gold.delay_predictions"
_boosters: dict[int, Any] = {}  # per worker process: the model, loaded once per version


def _booster(version: int, raw: bytes) -> Any:
    import xgboost

    if version not in _boosters:
        booster = xgboost.Booster()
        booster.load_model(bytearray(raw))
        _boosters[version] = booster
    return _boosters[version]


def predict_batch(
    batch: pd.DataFrame, history: dict[str, pd.DataFrame], model: bytes, model_version: int, best_iteration: int,
    scored_at: pd.Timestamp,
) -> pd.DataFrame:  # fmt: skip
    """Join a batch of flight features to the history features of their day and predict."""
    import xgboost

    frame = batch
    for ft in HISTORY_TABLES:
        frame = frame.merge(history[ft.table], on=[ft.entity, "feature_date"], how="left")
    x = frame[feature_names()].astype("float64")
    booster = _booster(model_version, model)
    p = booster.predict(xgboost.DMatrix(x), iteration_range=(0, best_iteration + 1))
    return pd.DataFrame(
        {
            "flight_id": frame["flight_id"],
            "flight_date": frame["feature_date"],
            "delay_probability": p.astype("float64"),
            "model_version": model_version,
            "scored_at": scored_at,
        }
    )


def _days(settings: Settings, table: str, start: dt.date, end: dt.date) -> pd.DataFrame:
    filters = [("feature_date", ">=", start), ("feature_date", "<=", end)]
    return delta_table(settings, table).to_pandas(filters=filters)


def score(settings: Settings, start: dt.date | None = None, end: dt.date | None = None) -> dict[str, Any]:
    """Score flights of days [start, end] with the champion; returns rows, model version, mean."""
    import pyarrow as pa
    import ray.data

    champion = registry.champion(settings)
    if champion is None:
        raise RuntimeError("no champion model in ml.models: train one first (`python -m ray_jobs.train`)")
    if start is None or end is None:
        latest = _latest_day(settings)
        start, end = start or latest, end or latest
    quiet_ray_data()
    booster = registry.load_model(champion, settings)
    # Only the join keys and features: every feature table also carries event_ts, which would
    # collide on the second merge.
    history = {
        ft.table: _days(settings, ft.table, start, end)[[ft.entity, "feature_date", *history_feature_names(ft.kind)]]
        for ft in HISTORY_TABLES
    }
    flights = ray.data.from_pandas(_days(settings, "gold.flight_features", start, end))
    scored = flights.map_batches(
        partial(
            predict_batch,
            history=history,
            model=bytes(booster.save_raw(raw_format="ubj")),
            model_version=champion.model_version,
            best_iteration=int(champion.config.get("best_iteration", booster.num_boosted_rounds() - 1)),
            scored_at=pd.Timestamp.now(tz="UTC"),
        ),
        batch_format="pandas",
    )
    frames = list(scored.iter_batches(batch_format="pandas", batch_size=None))
    table = pa.Table.from_pandas(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(), preserve_index=False)
    _write(settings, table, start, end)
    mean = float(pc_mean(table)) if table.num_rows else float("nan")
    export_metrics(settings, champion.model_version, mean)
    return {"rows": table.num_rows, "model_version": champion.model_version, "mean_probability": mean,
            "start": start.isoformat(), "end": end.isoformat()}  # fmt: skip


def export_metrics(settings: Settings, model_version: int, mean: float) -> int:
    """Set the scoring run's gauge and push it (group model_version=N, next to the training metrics)."""
    from lake.metrics import PREDICTION_MEAN, push

    PREDICTION_MEAN.labels(model_version=str(model_version)).set(mean)
    return push(settings, only=[("model_version", str(model_version))])


def pc_mean(table: pa.Table) -> float:
    import pyarrow.compute as pc

    return float(pc.mean(table["delay_probability"]).as_py())


def _latest_day(settings: Settings) -> dt.date:
    dates = delta_table(settings, "gold.flight_features").to_pyarrow_table(columns=["feature_date"])
    import pyarrow.compute as pc

    latest: dt.date = pc.max(dates["feature_date"]).as_py()
    return latest


def _write(settings: Settings, table: pa.Table, start: dt.date, end: dt.date) -> None:
    from deltalake import DeltaTable, write_deltalake

    path, options = path_of(settings, TABLE), storage_options(settings)
    if DeltaTable.is_deltatable(path, storage_options=options):
        predicate = f"flight_date >= '{start.isoformat()}' AND flight_date <= '{end.isoformat()}'"
        write_deltalake(path, table, mode="overwrite", predicate=predicate, storage_options=options)
    else:
        write_deltalake(path, table, mode="append", storage_options=options)


def main(argv: list[str] | None = None) -> None:
    from ray_jobs.cluster import init_ray

    parser = argparse.ArgumentParser(prog="python -m ray_jobs.score", description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=dt.date.fromisoformat, help="first day to score (default: latest)")
    parser.add_argument("--end", type=dt.date.fromisoformat, help="last day to score (default: latest)")
    args = parser.parse_args(argv)
    settings = get_settings()
    init_ray(settings)
    print(f"scored: {score(settings, args.start, args.end)}")


if __name__ == "__main__":
    from lake.process import run_then_exit

    run_then_exit(main)  # a finished job must not abort in native teardown (lake/process.py)
