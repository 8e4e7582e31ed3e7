"""Features and training, side by side on the same lake, set and params.

- Feature computation: the Ray Data job (`ray_jobs.features.compute`) vs the same trailing
  windows and flight context in DuckDB SQL over the same Delta snapshots (read with delta-rs),
  as flights per second.
- Training: Ray Train's XGBoostTrainer (`ml.num_workers` workers, 1 thread each) vs plain
  `xgboost.train` with nthread=2, same training set (Feast point-in-time retrieval), same
  params, rounds and early stopping; the wall time of the fit only (the Ray head is started
  before and not counted), and the test AUC of each.

Run alone: `python -m bench.training <lake with silver> [--split START,TRAIN_END,VALID_END,TEST_END]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.common import lake_environ, prepare_environment
from lake.settings import Settings, load_settings

# The same trailing windows as ray_jobs.features.trailing: days D-w .. D-1 on a dense calendar.
_HISTORY_SQL = """
WITH f AS (
  SELECT *, origin || '-' || dest AS route, carrier || ':' || origin || '-' || dest AS carrier_route,
         CAST((coalesce(arr_delay, 0) > {threshold} OR cancelled OR diverted) AS INTEGER) AS delayed
  FROM flights),
daily AS (
  SELECT {key} AS k, flight_date, count(*) AS n, sum(delayed) AS d,
         sum(coalesce(arr_delay, 0)) AS s, count(arr_delay) AS c
  FROM f GROUP BY 1, 2),
grid AS (
  SELECT k, CAST(unnest(generate_series(min(flight_date), (SELECT max(flight_date) + 1 FROM f), INTERVAL 1 DAY)) AS DATE)
         AS feature_date
  FROM daily GROUP BY k),
dense AS (
  SELECT g.k, g.feature_date, coalesce(n, 0) AS n, coalesce(d, 0) AS d, coalesce(s, 0) AS s, coalesce(c, 0) AS c
  FROM grid g LEFT JOIN daily ON daily.k = g.k AND daily.flight_date = g.feature_date),
win AS (
  SELECT k, feature_date,
    {windows}
  FROM dense)
SELECT * FROM win
"""
_WINDOW = (
    "sum(n) OVER (PARTITION BY k ORDER BY feature_date ROWS BETWEEN {w} PRECEDING AND 1 PRECEDING) AS n{w}, "
    "sum(d) OVER (PARTITION BY k ORDER BY feature_date ROWS BETWEEN {w} PRECEDING AND 1 PRECEDING) AS d{w}, "
    "sum(s) OVER (PARTITION BY k ORDER BY feature_date ROWS BETWEEN {w} PRECEDING AND 1 PRECEDING) AS s{w}, "
    "sum(c) OVER (PARTITION BY k ORDER BY feature_date ROWS BETWEEN {w} PRECEDING AND 1 PRECEDING) AS c{w}"
)
_CONTEXT_SQL = """
SELECT f.flight_id, f.flight_date, hour(timezone(a.time_zone, f.sched_dep_utc)) AS dep_hour,
       dayofweek(f.flight_date) AS weekday, month(f.flight_date) AS month, f.distance,
       w.temp_f, w.humidity_pct, w.wind_speed_mph, w.wind_gust_mph, w.precip_in, w.pressure_mb, w.visibility_mi,
       year(f.flight_date) - p.year_built AS plane_age, p.seats, p.engines, p.aircraft_type, p.engine_type
FROM flights f
LEFT JOIN airports a ON a.faa = f.origin
LEFT JOIN weather w ON w.origin = f.origin AND w.observed_at = date_trunc('hour', f.sched_dep_utc)
LEFT JOIN planes p ON p.tailnum = f.tailnum
"""


@dataclass
class TrainingBench:
    flights: int
    ray_data_features_s: float
    duckdb_features_s: float
    train_rows: int
    test_rows: int
    ray_train_s: float
    ray_train_auc: float
    xgboost_s: float
    xgboost_auc: float
    num_workers: int
    best_iteration_ray: int
    best_iteration_xgboost: int
    split: dict[str, str]
    test_metrics: dict[str, float] = field(default_factory=dict)  # Ray Train model and both baselines

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ray_data_rows_per_s"] = self.flights / self.ray_data_features_s
        out["duckdb_rows_per_s"] = self.flights / self.duckdb_features_s
        return out

    def summary(self) -> str:
        j = self.to_json()
        return (
            f"features: Ray Data {j['ray_data_rows_per_s']:,.0f} flights/s ({self.ray_data_features_s:.1f}s) vs "
            f"DuckDB {j['duckdb_rows_per_s']:,.0f} flights/s ({self.duckdb_features_s:.1f}s) on {self.flights:,} flights\n"
            f"training ({self.train_rows:,} rows): Ray Train {self.num_workers} workers {self.ray_train_s:.1f}s, "
            f"test AUC {self.ray_train_auc:.4f} vs xgboost.train nthread=2 {self.xgboost_s:.1f}s, test AUC {self.xgboost_auc:.4f}"
        )


def markdown(r: dict[str, Any]) -> list[str]:
    """The training section of docs/benchmarks.md: each side by side with its baseline."""
    split = r["split"]
    return [
        "| work | ours | s | rate | baseline | s | rate | ours / baseline (time) |",
        "|---|---|---|---|---|---|---|---|",
        f"| features for {r['flights']:,} flights (reading silver included) | Ray Data | {r['ray_data_features_s']:.1f} | "
        f"{r['ray_data_rows_per_s']:,.0f} flights/s | DuckDB SQL | {r['duckdb_features_s']:.1f} | "
        f"{r['duckdb_rows_per_s']:,.0f} flights/s | {r['ray_data_features_s'] / r['duckdb_features_s']:.2f} |",
        f"| XGBoost on {r['train_rows']:,} rows, same params and early stopping | Ray Train, {r['num_workers']} workers | "
        f"{r['ray_train_s']:.1f} | test AUC {r['ray_train_auc']:.4f} (best round {r['best_iteration_ray']}) | "
        f"`xgboost.train` nthread=2 | {r['xgboost_s']:.1f} | test AUC {r['xgboost_auc']:.4f} "
        f"(best round {r['best_iteration_xgboost']}) | {r['ray_train_s'] / r['xgboost_s']:.2f} |",
        "",
        f"Split: train {split['train_start']}..{split['train_end']}, validate to {split['valid_end']}, test to "
        f"{split['test_end']} ({r['test_rows']:,} test rows). Ray cluster start is excluded; Ray Train's time "
        "includes its worker group start, the Ray Dataset handoff and checkpointing.",
        *_against_baselines(r.get("test_metrics") or {}),
    ]


def _against_baselines(m: dict[str, float]) -> list[str]:
    """The Ray Train model's test metrics next to the two baselines train.evaluate reports."""
    if "auc" not in m:
        return []
    rows = [("the model (Ray Train)", ""), ("base rate of the training set", "base_rate_"),
            ("trailing 28-day carrier-route delay rate alone", "carrier_route_rate_")]  # fmt: skip
    return [
        "",
        "| test set | AUC | log loss | Brier |",
        "|---|---|---|---|",
        *(f"| {label} | {m[p + 'auc']:.4f} | {m[p + 'log_loss']:.4f} | {m[p + 'brier']:.4f} |" for label, p in rows),
    ]


def duckdb_features(settings: Settings) -> float:
    """Seconds to compute the same feature rows in DuckDB (reading the Delta tables included)."""
    import duckdb
    from deltalake import DeltaTable

    from lake.io import path_of
    from ray_jobs.features import HISTORY_TABLES, WINDOWS

    started = time.perf_counter()
    con = duckdb.connect()
    for name in ("flights", "weather", "planes", "airports"):
        con.register(name, DeltaTable(path_of(settings, f"silver.{name}")).to_pyarrow_dataset())
    windows = ",\n    ".join(_WINDOW.format(w=w) for w in WINDOWS)
    for ft in HISTORY_TABLES:
        sql = _HISTORY_SQL.format(key=ft.entity, threshold=settings.ml.delay_threshold_min, windows=windows)
        con.execute(sql).to_arrow_table()
    con.execute(_CONTEXT_SQL).to_arrow_table()
    return time.perf_counter() - started


def run(lake: Path, workdir: Path, split: dict[str, str] | None = None) -> TrainingBench:
    import xgboost

    from ray_jobs import features, train
    from ray_jobs.cluster import free_port, init_ray, start_head, stop_head

    env = {
        **lake_environ(lake),
        "LAKEHOUSE_RAY__HEAD_PORT": str(free_port()),
        "LAKEHOUSE_RAY__DASHBOARD_PORT": str(free_port()),
        "LAKEHOUSE_RAY__TEMP_DIR": tempfile.mkdtemp(prefix="raybench-", dir="/tmp"),
        **{f"LAKEHOUSE_ML__{k.upper()}": v for k, v in (split or {}).items()},
    }
    settings = load_settings("dev", env)
    start_head(settings)  # cluster start: not measured
    try:
        init_ray(settings)
        versions = {t: features.delta_version(settings, t) for t in features.INPUT_TABLES}
        started = time.perf_counter()
        tables = features.compute(settings, versions)
        ray_data_s = time.perf_counter() - started
        flights = tables["gold.flight_features"].num_rows
        duck_s = duckdb_features(settings)
        features.write(settings, tables)
        with tempfile.TemporaryDirectory(dir=workdir) as feast_root:
            frame = train.training_set(settings, train.current_versions(settings), feast_root)
        parts = train.split(frame, settings)

        started = time.perf_counter()
        ray_booster = train.fit_ray(settings, parts, str(workdir / "ray-train"), "bench")
        ray_s = time.perf_counter() - started
        ray_metrics, _ = train.evaluate(ray_booster, parts)

        ml = settings.ml
        data = {k: train.matrix(parts[k]) for k in ("train", "valid")}
        dtrain, dvalid = (xgboost.DMatrix(d.drop(columns=[train.LABEL]), label=d[train.LABEL]) for d in data.values())
        started = time.perf_counter()
        booster = xgboost.train(
            {**ml.params, "nthread": 2}, dtrain, num_boost_round=ml.num_boost_round, evals=[(dvalid, "valid")],
            early_stopping_rounds=ml.early_stopping_rounds, verbose_eval=False,
        )  # fmt: skip
        xgb_s = time.perf_counter() - started
        xgb_metrics, _ = train.evaluate(booster, parts)
    finally:
        import ray

        ray.shutdown()
        stop_head(settings)
    return TrainingBench(
        flights=flights, ray_data_features_s=ray_data_s, duckdb_features_s=duck_s,
        train_rows=len(parts["train"]), test_rows=len(parts["test"]),
        ray_train_s=ray_s, ray_train_auc=float(ray_metrics["auc"]), xgboost_s=xgb_s, xgboost_auc=float(xgb_metrics["auc"]),
        num_workers=ml.num_workers, best_iteration_ray=int(ray_booster.best_iteration),
        best_iteration_xgboost=int(booster.best_iteration),
        split={k: str(getattr(ml, k)) for k in ("train_start", "train_end", "valid_end", "test_end")},
        test_metrics={k: float(v) for k, v in ray_metrics.items()},
    )  # fmt: skip


def quick_split(end: dt.date) -> dict[str, str]:
    """A split for a lake that ends at `end` (the quick benchmark's January): the last 6 days test."""
    return {
        "train_start": "2013-01-01",
        "train_end": (end - dt.timedelta(days=11)).isoformat(),
        "valid_end": (end - dt.timedelta(days=6)).isoformat(),
        "test_end": end.isoformat(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.training", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("lake", type=Path, help="a lake whose silver tables are built (e.g. after `lakehouse run`)")
    parser.add_argument("--split", help="START,TRAIN_END,VALID_END,TEST_END (default: config ml.*)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-training-"))
    prepare_environment(workdir)
    split = dict(zip(("train_start", "train_end", "valid_end", "test_end"), args.split.split(","), strict=True)) if args.split else None
    result = run(args.lake, workdir, split)
    print(json.dumps(result.to_json(), indent=2))
    print(result.summary())


if __name__ == "__main__":
    main()
