"""deploy-serving: the Serve applications of serve/config.yaml onto the Ray cluster, detached.

What `lakehouse serve --detach` does, as a flow: the apps keep serving after the run, on the
cluster at `ray.address`, or on the local head (`lakehouse ray start`, or the one a platform
run started).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.tasks import ParameterError, ray_preflight, starting
from lake.settings import get_settings, resolve_path
from serve.deploy import AppUrl


def check_config(config: str | None) -> None:
    """A named Serve config must exist and pass Serve's schema (before any work)."""
    if config is None:
        return
    from serve.deploy import DeployError, load_config

    if not Path(resolve_path(config)).is_file():
        raise ParameterError(f"parameter `config`: no such file {config}")
    try:
        load_config(get_settings(), config)
    except DeployError as exc:
        raise ParameterError(f"parameter `config`: {exc}") from None


@task(cache_policy=NO_CACHE, task_run_name="deploy-serve-apps")
def deploy_apps(address: str, config: str | None = None) -> list[AppUrl]:
    """Deploy (or update in place) every application on the cluster at `address`; wait until each runs."""
    import ray

    from serve import deploy as serving

    settings = get_settings()
    starting("deploy the Serve applications")
    parsed = serving.load_config(settings, config)  # the replicas get this process's LAKEHOUSE_* variables
    joined = settings.model_copy(update={"ray": settings.ray.model_copy(update={"address": address})})
    already = ray.is_initialized()
    serving.connect(joined)
    try:
        return serving.deploy(parsed)
    finally:
        if not already:
            ray.shutdown()  # only this driver goes: Serve's controller and replicas are detached


@flow(name="deploy-serving", log_prints=True)
def deploy_serving(config: str | None = None) -> list[AppUrl]:
    """Serve the gold tables and the champion model over HTTP; returns (and prints) the URLs.

    `config` is a Serve config file (default `serve.config_file`, serve/config.yaml).
    """
    from ray_jobs.cluster import RayJobError, driver_address

    address = driver_address(get_settings())  # first: it puts Ray's client in token mode before Ray loads
    check_config(config)
    ray_preflight()
    if not address:  # never a private Ray: the apps would end with this process
        raise RayJobError("no Ray cluster address to deploy to: set ray.address, or run `lakehouse ray start`")
    urls = deploy_apps(address, config)
    for app in urls:
        print(f"{app.name}: {'  '.join(app.urls)}")
    return urls
