"""train: Ray Train XGBoost on the Feast training set; the model is registered (champion if not worse)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.tasks import ray_job, ray_job_url, ray_preflight
from lake.settings import get_settings
from ray_jobs import registry


@dataclass(frozen=True)
class Trained:
    job_id: str  # the Ray job (its page is in the dashboard)
    model: registry.ModelRecord | None  # what it registered; None for a retrain from pins (nothing is)


def registered_version(job_id: str) -> int:
    """The model version the train job registered: its entry point prints it as its last JSON line."""
    from ray_jobs.cluster import RayJobError, client

    for line in reversed(client(get_settings()).get_job_logs(job_id).splitlines()):
        if line.startswith("{") and '"model_version"' in line:
            return int(json.loads(line)["model_version"])
    raise RayJobError(f"job {job_id} (train) succeeded but printed no model version")


@task(cache_policy=NO_CACHE, task_run_name="model-metrics")
def model_metrics(job_id: str) -> registry.ModelRecord:
    """The registered model's test metrics next to both baselines, as the `model-metrics` artifact."""
    settings = get_settings()
    model = registry.get(settings, registered_version(job_id))  # what ml.models recorded, not the log
    m = model.metrics
    rows = [
        (f"model v{model.model_version} (XGBoost on Ray Train)", ""),
        ("baseline: training base rate", "base_rate_"),
        ("baseline: trailing 28-day carrier-route delay rate", "carrier_route_rate_"),
    ]
    champion = registry.champion(settings)
    if model.champion:
        verdict = f"**champion**: yes, model v{model.model_version} is served"
    else:
        held = f"v{champion.model_version} (test AUC {champion.test_auc:.4f})" if champion else "none"
        verdict = f"**champion**: no, the champion stays {held}: a new model must not be worse on test AUC"
    lines = [
        f"# Model v{model.model_version}: flight arrives more than {settings.ml.delay_threshold_min} min late",
        "",
        "| | test AUC | log loss | Brier |",
        "|---|---|---|---|",
        *(f"| {name} | {m[p + 'auc']:.4f} | {m[p + 'log_loss']:.4f} | {m[p + 'brier']:.4f} |" for name, p in rows),
        "",
        f"- {verdict}",
        f"- test set: {int(m.get('test_rows', 0))} flights, {m.get('test_positive_rate', 0.0):.1%} late "
        f"(split {model.config.get('train_start')}..{model.config.get('test_end')})",
        f"- Ray job: [{job_id}]({ray_job_url(job_id)}); everything recorded: `lakehouse models show {model.model_version}`",
    ]
    create_markdown_artifact("\n".join(lines), key="model-metrics", description=f"train: model v{model.model_version}")
    print(f"model v{model.model_version}: test AUC {model.test_auc:.4f}, champion: {model.champion}")
    return model


@flow(name="train", log_prints=True)
def train(from_model: int | None = None) -> Trained:
    """Train on the latest features; with `from_model`, retrain from that model's pins and compare AUCs."""
    ray_preflight()
    if from_model:
        return Trained(ray_job("train", ["--from-model", str(from_model)]), None)
    job_id = ray_job("train", [])
    return Trained(job_id, model_metrics(job_id))
