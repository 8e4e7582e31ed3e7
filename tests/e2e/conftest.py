"""Ray Serve end-to-end fixtures: a small gold lake, a private Ray head, the apps deployed by the CLI.

Started once per session and shared by tests/e2e/test_serve_*.py. The Ray head is this session's
own (`serve.deploy.start_private_head`: free ports, its own temp dir, 2 CPUs, 512 MB object
store): it never touches another Ray on the machine, and only its processes are stopped.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import yaml

from lake.settings import REPO_ROOT, Settings
from serve.deploy import PrivateHead, free_port, start_private_head, stop_private_head

# Ray reads its auth mode once, at its first import: the serve modules these tests import pull Ray
# in at collection, before any fixture runs. Token mode (the local heads' mode) has to be set by
# then, or in-process Jobs API clients (tests/ml_support.py's jobs) never send the token.
os.environ.setdefault("RAY_AUTH_MODE", "token")

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SERVE_TOKEN = "e2e-serve-token"
FIRST_DAYS = (dt.date(2013, 12, 1), dt.date(2013, 12, 1))
LATER_DAY = dt.date(2013, 12, 2)


@dataclass(frozen=True)
class ServeLake:
    settings: Settings
    first_versions: dict[str, int]  # gold versions before the later day was published


@pytest.fixture(scope="session")
def serve_lake(spark: SparkSession, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> ServeLake:
    """December 1, 2013 published, then December 2: gold tables with two versions to travel between."""
    from lake import io, pipeline, tables
    from lake.seed import seed
    from lake.source import find_source

    root = tmp_path_factory.mktemp("serve") / "lake"
    lake = settings.model_copy(update={"lake": settings.lake.model_copy(update={"root": str(root)})})
    wanted = [tables.get("silver.airports"), tables.get("silver.flights")]
    wanted += [t for t in tables.run_order() if t.layer == "gold"]

    def build(start: dt.date, end: dt.date) -> None:
        seed(lake, start, end)
        for source in ("airports", "flights"):
            pipeline.run_ingest(spark, lake, find_source(lake, source))
        pipeline.run(spark, lake, layers=(), only=wanted)

    build(*FIRST_DAYS)
    first = {t.name: io.version(spark, lake, t.fqn) for t in wanted if t.layer == "gold"}
    build(LATER_DAY, LATER_DAY)
    return ServeLake(lake, {k: v for k, v in first.items() if v is not None})


@pytest.fixture(scope="session")
def ray_head() -> Iterator[PrivateHead]:
    head = start_private_head(num_cpus=2, object_store_mb=512)
    try:
        yield head
    finally:
        stop_private_head(head)


@dataclass(frozen=True)
class ServeApp:
    base_url: str
    token: str
    environ: dict[str, str]
    lake: ServeLake

    def client(self, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]


def lakehouse(environ: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lake", *args], env=environ, cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture(scope="session")
def model_dir(serve_lake: ServeLake) -> Path:
    """Champion v1 where the model app looks by default (`<lake>/_models/flight-delay`)."""
    from serve.model_app import MODEL_NAME, FileModelSource, train_reference_model

    folder = Path(serve_lake.settings.lake_root) / "_models" / MODEL_NAME
    folder.mkdir(parents=True)
    train_reference_model(serve_lake.settings, rounds=10).save_model(str(folder / "v1.ubj"))
    FileModelSource(str(folder)).promote("v1")
    return folder


def serve_config(folder: Path, model_args: dict[str, object], num_cpus: float | None = None) -> Path:
    """serve/config.yaml with the model app's args overridden (and every replica's CPUs, when
    given), written under `folder`."""
    config = yaml.safe_load((REPO_ROOT / "serve" / "config.yaml").read_text())
    for app in config["applications"]:
        if app["name"] == "model":
            app["args"] = {**app["args"], **model_args}
        if num_cpus is not None:
            for deployment in app.get("deployments", []):
                deployment.setdefault("ray_actor_options", {})["num_cpus"] = num_cpus
    target = folder / "serve-config.yaml"
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


@pytest.fixture(scope="session")
def serve_app(
    serve_lake: ServeLake, ray_head: PrivateHead, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeApp]:
    """`lakehouse serve --detach` against the private head; `lakehouse serve --stop` at the end.

    The model app serves `model_source: files` (the reference booster in `model_dir`, gold-table
    features): this lake has no model registry; tests/e2e/test_serve_registry.py covers that path.
    """
    config = serve_config(tmp_path_factory.mktemp("serve-config"), {"model_source": "files"})
    port = free_port()
    environ = {
        **os.environ,
        "LAKEHOUSE_LAKE__ROOT": serve_lake.settings.lake.root,
        **ray_head.environ,
        "LAKEHOUSE_RAY__ADDRESS": ray_head.address,
        "LAKEHOUSE_SERVE__PORT": str(port),
        "SERVE_AUTH_TOKEN": SERVE_TOKEN,
    }
    started = lakehouse(environ, "serve", "--detach", "--config", str(config))
    assert started.returncode == 0, started.stderr[-4000:]
    base = f"http://127.0.0.1:{port}"
    assert f"{base}/v1/tables" in started.stdout  # the URLs are printed
    try:
        yield ServeApp(base, SERVE_TOKEN, environ, serve_lake)
    finally:
        lakehouse(environ, "serve", "--stop", timeout=120)
