"""Feast feature services: one per model version, naming exactly the features it was trained on."""

from __future__ import annotations

from feast import FeatureService, FeatureView

OWNER = "ml-platform@example.org"


def service_name(model_version: int | str) -> str:
    return f"delay_model_v{model_version}"


def service(views: dict[str, FeatureView], model_version: int | str) -> FeatureService:
    return FeatureService(
        name=service_name(model_version),
        features=list(views.values()),
        description="Inputs of the flight-delay model of this version",
        owner=OWNER,
        tags={"model_version": str(model_version), "model": "flight_delay"},
    )
