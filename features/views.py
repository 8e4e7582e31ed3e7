"""Feast feature views: one per feature table, with explicit schemas."""

from __future__ import annotations

import datetime as dt

from feast import FeatureView, Field, FileSource
from feast.types import Float64, Int64

from features.entities import entities
from ray_jobs.features import FEATURE_TABLES, FLIGHT_FEATURE_NAMES, HISTORY_TABLES, history_feature_names

INT_FEATURES = {"dep_hour", "weekday", "month", "is_holiday", "days_to_holiday", "aircraft_type", "engine_type"}
# A day's row is valid for that day's flights only (its event_ts is the day's start).
TTL = dt.timedelta(days=1)


def views(sources: dict[str, FileSource]) -> dict[str, FeatureView]:
    ents = entities()
    out = {}
    for ft in FEATURE_TABLES:
        names = history_feature_names(ft.kind) if ft in HISTORY_TABLES else FLIGHT_FEATURE_NAMES
        out[ft.table] = FeatureView(
            name=ft.kind,
            entities=[ents[ft.entity]],
            ttl=TTL,
            schema=[Field(name=n, dtype=Int64 if n in INT_FEATURES else Float64) for n in names],
            source=sources[ft.table],
            online=True,
            description=ft.description,
            owner=ft.owner,
            tags={"table": ft.table, "kind": "history" if ft in HISTORY_TABLES else "context"},
        )
    return out
