"""The feature store, configured from settings: registry and online store under the lake
(beside it when the lake is on object storage: see `feast_dir`; in prod the registry is one
s3:// object shared by every job driver and Serve replica: `registry_path`).

`feature_store(settings)` is the lake's store (sources = the latest exports, online store
from `ml.online_store`: SQLite locally, Redis in prod). `snapshot_store` builds a throw-away
store over exports of pinned versions: training reads from one, so a model's training set is
exactly its pinned versions, and retraining from the pins rebuilds the same set.
`write_config` writes the equivalent feature_store.yaml for the `feast` CLI.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lake.io import path_of, storage_options
from lake.settings import ConfigError, Settings, is_uri, join, resolve_path, telemetry_off
from ray_jobs.features import FEATURE_TABLES

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore, FeatureView


def feast_dir(settings: Settings) -> str:
    """The lake store's local files: feature_store.yaml, the Parquet exports Feast reads, SQLite.

    `ml.feast_dir` when set; else `<lake>/_feast` for a lake in a local folder. Feast's exports
    and SQLite need a local disk, so with the lake on object storage and no `ml.feast_dir` they
    live in the folder of the SQLite online store (`ml.online_store.path`, the cluster profile).
    """
    if settings.ml.feast_dir:
        return resolve_path(settings.ml.feast_dir)
    if not is_uri(settings.lake_root):
        return join(settings.lake_root, "_feast")
    online = settings.ml.online_store
    if online.get("type") == "sqlite" and online.get("path"):
        return str(Path(resolve_path(str(online["path"]))).parent)
    raise ConfigError(
        f"the lake is on object storage ({settings.lake_root}): Feast keeps its exports on a local disk; "
        "set ml.feast_dir to a local folder (or ml.online_store to sqlite with a local `path`)"
    )


def registry_path(settings: Settings) -> str:
    """The lake store's registry: `ml.feast_registry` (an s3:// object every job driver and Serve
    replica shares, in prod), else `registry.db` in `feast_dir`."""
    shared = settings.ml.feast_registry
    if not shared:
        return join(feast_dir(settings), "registry.db")
    return "s3://" + shared.removeprefix("s3a://") if shared.startswith("s3a://") else shared  # Feast knows s3:// only


def _config(settings: Settings, root: str, registry: str) -> dict[str, Any]:
    online = dict(settings.ml.online_store)
    if online.get("type") == "sqlite" and not online.get("path"):
        online["path"] = join(root, "online.db")
    return {
        "project": settings.ml.feast_project,
        "provider": "local",
        "registry": {"registry_type": "file", "path": registry},
        "offline_store": {"type": "duckdb"},
        "online_store": online,
        "entity_key_serialization_version": 3,
    }


def _store(settings: Settings, root: str, online: bool) -> FeatureStore:
    """The lake store (`online`: the configured online store, the lake's registry) or a private
    one in `root` (its own registry and SQLite: training's snapshots)."""
    from feast import FeatureStore, RepoConfig

    telemetry_off()
    Path(root).mkdir(parents=True, exist_ok=True)
    registry = registry_path(settings) if online else join(root, "registry.db")
    if registry.startswith("s3://") and settings.object_store.endpoint_url:  # Feast's S3 registry reads only this
        os.environ.setdefault("FEAST_S3_ENDPOINT_URL", settings.object_store.endpoint_url)
    config = _config(settings, root, registry)
    if not online:
        config["online_store"] = {"type": "sqlite", "path": join(root, "online.db")}
    return FeatureStore(config=RepoConfig(repo_path=Path(root), **config))


def write_config(settings: Settings) -> Path:
    """feature_store.yaml for the lake's store (for `feast -c <dir> ...`)."""
    root = feast_dir(settings)
    Path(root).mkdir(parents=True, exist_ok=True)
    target = Path(root) / "feature_store.yaml"
    target.write_text(yaml.safe_dump(_config(settings, root, registry_path(settings)), sort_keys=False))
    return target


def table_paths(settings: Settings) -> dict[str, str]:
    return {ft.table: path_of(settings, ft.table) for ft in FEATURE_TABLES}


def _apply(store: FeatureStore, offline_dir: str, model_version: int | str | None = None) -> dict[str, FeatureView]:
    from features.entities import entities
    from features.services import service
    from features.sources import sources
    from features.views import views

    vs = views(sources(offline_dir))
    objects: list[Any] = [*entities().values(), *vs.values()]
    if model_version is not None:
        objects.append(service(vs, model_version))
    store.apply(objects)
    return vs


def publish(settings: Settings, versions: dict[str, int]) -> FeatureStore:
    """Export the feature tables at `versions` as the lake store's sources and `feast apply`."""
    from features.sources import export

    offline = join(feast_dir(settings), "offline")
    export(table_paths(settings), versions, offline, storage_options(settings))
    store = _store(settings, feast_dir(settings), online=True)
    _apply(store, offline)
    return store


def register_service(settings: Settings, model_version: int) -> str:
    """Apply the model version's FeatureService to the lake's registry; returns the registry version."""
    store = _store(settings, feast_dir(settings), online=True)
    _apply(store, join(feast_dir(settings), "offline"), model_version)
    return registry_version(store)


def registry_version(store: FeatureStore) -> str:
    proto = store.registry.proto()
    return f"{proto.version_id}@{proto.last_updated.ToDatetime().isoformat()}"


def materialize(settings: Settings, start: dt.date, end: dt.date) -> None:
    """Load feature rows of days [start, end] into the online store (incremental by day range)."""
    store = _store(settings, feast_dir(settings), online=True)
    begin = dt.datetime.combine(start, dt.time(), dt.UTC)
    stop = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
    store.materialize(start_date=begin, end_date=stop)


def snapshot_store(settings: Settings, versions: dict[str, int], root: str) -> tuple[FeatureStore, dict[str, FeatureView]]:
    """A store over the feature tables at `versions`, in `root` (its own registry)."""
    from features.sources import export

    export(table_paths(settings), versions, join(root, "offline"), storage_options(settings))
    store = _store(settings, root, online=False)
    return store, _apply(store, join(root, "offline"))


def historical(store: FeatureStore, views: dict[str, FeatureView], entity_df: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time join: for each entity row, the latest feature row at or before its event_timestamp."""
    refs = [f"{v.name}:{f.name}" for v in views.values() for f in v.features]
    return store.get_historical_features(entity_df=entity_df, features=refs).to_df()


def lake_store(settings: Settings) -> FeatureStore:
    """The lake's feature store (what serving reads online features from)."""
    return _store(settings, feast_dir(settings), online=True)
