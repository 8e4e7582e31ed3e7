"""Feast entities: the join keys of the feature tables."""

from __future__ import annotations

from feast import Entity, ValueType

from ray_jobs.features import FEATURE_TABLES

OWNER = "ml-platform@example.org"


def entities() -> dict[str, Entity]:
    """One entity per join key of the declared feature tables."""
    return {
        ft.entity: Entity(
            name=ft.entity,
            join_keys=[ft.entity],
            value_type=ValueType.STRING,
            description=f"join key of {ft.table}",
            owner=OWNER,
            tags={"domain": "flights"},
        )
        for ft in FEATURE_TABLES
    }
