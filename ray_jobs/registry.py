"""The model registry: the Delta table `ml.models`, one row per trained model.

API (small on purpose; Serve reads the champion through it):

- `champion(settings) -> ModelRecord | None`: the model to serve; load it with `load_model`.
- `record(settings, ...) -> ModelRecord`: register a trained model; it becomes champion only
  when its test AUC is not worse than the current champion's.
- `promote(settings, version)`, `rollback(settings)`: move the champion by hand.
- `models(settings)`: every record, newest first.
- `pinned_versions(settings) -> {table: oldest pinned Delta version}`: what maintenance
  must keep readable (vacuum and log retention honour it through `retention_hours`).

Each record carries the test metrics, params, code revision, the Delta version of every input
table, the Feast registry version and the artifact's location in the lake. The table is tiny:
every change rewrites it in one Delta commit, so the champion flag moves atomically.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lake.settings import REPO_ROOT, Settings, join

if TYPE_CHECKING:
    import xgboost

TABLE = "ml.models"
MODEL_FILE = "model.ubj"


class RegistryError(ValueError):
    """A registry request that cannot be honoured (unknown version, nothing to roll back to)."""


@dataclass(frozen=True)
class ModelRecord:
    model_version: int
    created_at: dt.datetime
    git_revision: str
    params: dict[str, Any]
    metrics: dict[str, float]  # test auc, log_loss, brier (+ baselines)
    input_versions: dict[str, int]  # Delta version of every input table
    feast_registry_version: str
    feature_service: str
    artifact_uri: str
    config: dict[str, Any] = field(default_factory=dict)  # split dates, boosting rounds, workers
    champion: bool = False
    promoted_at: dt.datetime | None = None

    @property
    def test_auc(self) -> float:
        return float(self.metrics["auc"])


def table_path(settings: Settings) -> str:
    return settings.table_path("ml", "models")


def artifact_dir(settings: Settings, model_version: int) -> str:
    return join(settings.lake_root, "ml", "artifacts", f"v{model_version}")


def git_revision() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    rev = out.stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    return f"{rev}+dirty" if dirty.stdout.strip() else rev


_JSON = ("params", "metrics", "input_versions", "config")


def _to_row(r: ModelRecord) -> dict[str, Any]:
    row = asdict(r)
    for key in _JSON:
        row[key] = json.dumps(row[key], sort_keys=True)
    row["test_auc"] = r.test_auc
    return row


def _from_row(row: dict[str, Any]) -> ModelRecord:
    values = {k: v for k, v in row.items() if k != "test_auc"}
    for key in _JSON:
        values[key] = json.loads(values[key])
    values["model_version"] = int(values["model_version"])
    values["champion"] = bool(values["champion"])
    if isinstance(values.get("promoted_at"), float) and math.isnan(values["promoted_at"]):
        values["promoted_at"] = None
    return ModelRecord(**values)


def models(settings: Settings) -> list[ModelRecord]:
    """Every registered model, newest first ([] before the first)."""
    from deltalake import DeltaTable

    from lake.io import storage_options

    path, options = table_path(settings), storage_options(settings)
    if not DeltaTable.is_deltatable(path, storage_options=options):
        return []
    rows = DeltaTable(path, storage_options=options).to_pyarrow_table().to_pylist()
    return sorted((_from_row(r) for r in rows), key=lambda m: m.model_version, reverse=True)


def _write(settings: Settings, records: list[ModelRecord]) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake

    from lake.io import storage_options

    schema = pa.schema(
        [
            ("model_version", pa.int64()), ("created_at", pa.timestamp("us", tz="UTC")),
            ("git_revision", pa.string()), ("params", pa.string()), ("metrics", pa.string()),
            ("input_versions", pa.string()), ("feast_registry_version", pa.string()),
            ("feature_service", pa.string()), ("artifact_uri", pa.string()), ("config", pa.string()),
            ("champion", pa.bool_()), ("promoted_at", pa.timestamp("us", tz="UTC")), ("test_auc", pa.float64()),
        ]
    )  # fmt: skip
    table = pa.Table.from_pylist([_to_row(r) for r in records], schema=schema)
    write_deltalake(table_path(settings), table, mode="overwrite", storage_options=storage_options(settings))


def champion(settings: Settings) -> ModelRecord | None:
    """The model to serve, or None when none is registered."""
    return next((m for m in models(settings) if m.champion), None)


def get(settings: Settings, model_version: int) -> ModelRecord:
    for m in models(settings):
        if m.model_version == model_version:
            return m
    known = ", ".join(str(m.model_version) for m in models(settings)) or "none"
    raise RegistryError(f"model version {model_version} is not registered (registered: {known})")


def next_version(settings: Settings) -> int:
    return max((m.model_version for m in models(settings)), default=0) + 1


def _with_champion(records: list[ModelRecord], version: int) -> list[ModelRecord]:
    now = dt.datetime.now(dt.UTC)
    return [
        ModelRecord(**{**asdict(m), "champion": m.model_version == version,
                       "promoted_at": now if m.model_version == version else m.promoted_at})
        for m in records
    ]  # fmt: skip


# lakehouse_model_metric{metric=...} -> the record's metric: the names the alert rules read
# (monitoring/prometheus/rules/model.yml); the test set's late share is what drift compares with.
EXPORTED_METRICS = {"auc": "auc", "log_loss": "log_loss", "brier": "brier", "positive_rate": "test_positive_rate"}


def export_metrics(settings: Settings, record: ModelRecord) -> int:
    """Set the model's gauges and push them (group model_version=N); returns groups pushed."""
    from lake.metrics import MODEL_METRIC, push

    version = str(record.model_version)
    for name, key in EXPORTED_METRICS.items():
        if key in record.metrics:
            MODEL_METRIC.labels(model_version=version, metric=name).set(record.metrics[key])
    return push(settings, only=[("model_version", version)])


def record(settings: Settings, candidate: ModelRecord) -> ModelRecord:
    """Register `candidate`; champion when its test AUC is not worse than the champion's."""
    existing = models(settings)
    if any(m.model_version == candidate.model_version for m in existing):
        raise RegistryError(f"model version {candidate.model_version} is already registered")
    current = next((m for m in existing if m.champion), None)
    wins = current is None or candidate.test_auc >= current.test_auc
    records = [*existing, candidate]
    if wins:
        records = _with_champion(records, candidate.model_version)
    _write(settings, records)
    export_metrics(settings, candidate)
    return get(settings, candidate.model_version)


def promote(settings: Settings, model_version: int) -> ModelRecord:
    """Make `model_version` the champion, whatever its metrics (a human decision)."""
    get(settings, model_version)
    _write(settings, _with_champion(models(settings), model_version))
    return get(settings, model_version)


def rollback(settings: Settings) -> ModelRecord:
    """Give the champion role back to the model that held it before the current one."""
    records = models(settings)
    current = next((m for m in records if m.champion), None)
    earlier = [m for m in records if m.promoted_at is not None and (current is None or m.model_version != current.model_version)]
    if current is not None:
        earlier = [m for m in earlier if m.promoted_at and current.promoted_at and m.promoted_at < current.promoted_at]
    if not earlier:
        raise RegistryError("no earlier champion to roll back to")
    previous = max(earlier, key=lambda m: m.promoted_at or dt.datetime.min.replace(tzinfo=dt.UTC))
    return promote(settings, previous.model_version)


def load_model(record: ModelRecord, settings: Settings | None = None) -> xgboost.Booster:
    """The model's booster, read from its artifact in the lake (`settings` name the object
    store an s3a:// artifact is on; default: this process's)."""
    import pyarrow.fs as pafs
    import xgboost

    from lake.settings import get_settings
    from ray_jobs.features import is_remote, lake_filesystem

    uri = join(record.artifact_uri, MODEL_FILE)
    if is_remote(uri):
        fs, path = lake_filesystem(settings or get_settings(), uri)
    else:
        fs, path = pafs.LocalFileSystem(), uri.removeprefix("file://")
    with fs.open_input_stream(path) as stream:
        raw = stream.read()
    booster = xgboost.Booster()
    booster.load_model(bytearray(raw))
    return booster


def save_artifact(settings: Settings, model_version: int, booster: xgboost.Booster, extra: dict[str, Any]) -> str:
    """Write the model and a JSON summary under the lake; returns the artifact directory."""
    from ray_jobs.features import lake_filesystem

    directory = artifact_dir(settings, model_version)
    fs, base = lake_filesystem(settings, directory)
    fs.create_dir(base, recursive=True)
    with fs.open_output_stream(f"{base}/{MODEL_FILE}") as out:
        out.write(bytes(booster.save_raw(raw_format="ubj")))
    with fs.open_output_stream(f"{base}/summary.json") as out:
        out.write(json.dumps(extra, indent=2, sort_keys=True, default=str).encode())
    return directory


def pinned_versions(settings: Settings) -> dict[str, int]:
    """For each table some registered model pins, the oldest version pinned."""
    pins: dict[str, int] = {}
    for m in models(settings):
        for table, version in m.input_versions.items():
            pins[table] = min(version, pins.get(table, version))
    return pins


def pinned_since(settings: Settings, table: str) -> dt.datetime | None:
    """When the oldest version of `table` a registered model pins was committed (None: no pin)."""
    from ray_jobs.features import delta_table

    version = pinned_versions(settings).get(table)
    if version is None:
        return None
    history = delta_table(settings, table).history()
    stamps = [h["timestamp"] for h in history if int(h["version"]) == version]
    if not stamps:  # the commit is older than the log we can see: treat it as very old
        stamps = [min(h["timestamp"] for h in history)]
    return dt.datetime.fromtimestamp(stamps[0] / 1000, dt.UTC)


def retention_hours(settings: Settings, table: str, requested_hours: int, now: dt.datetime | None = None) -> int:
    """VACUUM retention that keeps every pinned version of `table` readable.

    Files a version needs are removed by later commits, so keeping every file removed since
    the pinned version's commit keeps it readable: retention must reach back to that commit.
    """
    since = pinned_since(settings, table)
    if since is None:
        return requested_hours
    age_h = math.ceil(((now or dt.datetime.now(dt.UTC)) - since).total_seconds() / 3600) + 1
    return max(requested_hours, age_h)


def log_retention_days(settings: Settings, table: str, default_days: int = 30, now: dt.datetime | None = None) -> int | None:
    """Days of Delta log to keep so the pinned version stays reconstructible; None when the default does."""
    since = pinned_since(settings, table)
    if since is None:
        return None
    age_d = math.ceil(((now or dt.datetime.now(dt.UTC)) - since).total_seconds() / 86400) + 7
    return age_d if age_d > default_days else None


def protect_pins(spark: Any, settings: Settings, table: str, requested_hours: int) -> int:
    """Before VACUUM: extend log retention when a pin needs it; returns the retention to vacuum with."""
    from lake.io import path_of

    days = log_retention_days(settings, table)
    if days is not None:
        spark.sql(
            f"ALTER TABLE delta.`{path_of(settings, table)}` SET TBLPROPERTIES "
            f"('delta.logRetentionDuration' = 'interval {days} days')"
        )
    return retention_hours(settings, table, requested_hours)
