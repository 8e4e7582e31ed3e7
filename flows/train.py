"""train: Ray Train XGBoost on the Feast training set; the model is registered (champion if not worse)."""

from __future__ import annotations

from prefect import flow

from flows.tasks import ray_job, ray_preflight


@flow(name="train", log_prints=True)
def train(from_model: int | None = None) -> str:
    """Train on the latest features; with `from_model`, retrain from that model's pins and compare AUCs."""
    ray_preflight()
    return ray_job("train", ["--from-model", str(from_model)] if from_model else [])
