"""The prod layout of the feature store: the registry is one object in the lake's bucket.

A real S3 endpoint (moto's server) stands in for the bucket; two stores built from the same
settings, as a job driver and a Serve replica build them, share what one applied.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lake.settings import load_settings
from ray_jobs.cluster import free_port


def test_prod_profile_puts_the_registry_in_the_lake_bucket() -> None:
    from features.store import feast_dir, registry_path

    prod = load_settings("prod", environ={**_prod_refs(), "LAKE_ROOT_URI": "s3a://acme-lake/prod"})
    assert registry_path(prod) == "s3://acme-lake/prod/_feast/registry.db"  # Feast knows s3://, not s3a://
    assert feast_dir(prod) == "/tmp/lakehouse-feast" and prod.ml.online_store["type"] == "redis"


def _prod_refs() -> dict[str, str]:
    import re

    from lake.settings import REPO_ROOT

    text = (REPO_ROOT / "config" / "prod.yml").read_text()
    return {var: f"value-of-{var.lower()}" for var in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)}


def test_two_stores_share_an_s3_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from feast import Entity, ValueType
    from moto.server import ThreadedMotoServer

    from features.store import lake_store

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        url = f"http://127.0.0.1:{port}"
        for var, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(var, value)
        monkeypatch.delenv("FEAST_S3_ENDPOINT_URL", raising=False)
        boto3.client("s3", endpoint_url=url).create_bucket(Bucket="acme-lake")
        settings = load_settings("dev", environ={
            "LAKEHOUSE_LAKE__ROOT": str(tmp_path / "lake"),
            "LAKEHOUSE_OBJECT_STORE__ENDPOINT_URL": url,
            "LAKEHOUSE_ML__FEAST_REGISTRY": "s3a://acme-lake/prod/_feast/registry.db",
        })  # fmt: skip
        lake_store(settings).apply([Entity(name="carrier", join_keys=["carrier"], value_type=ValueType.STRING)])
        keys = [o["Key"] for o in boto3.client("s3", endpoint_url=url).list_objects_v2(Bucket="acme-lake")["Contents"]]
        assert keys == ["prod/_feast/registry.db"]
        other = lake_store(settings.model_copy(update={"lake": settings.lake.model_copy(update={"root": str(tmp_path / "elsewhere")})}))
        assert [e.name for e in other.list_entities()] == ["carrier"]  # what another process sees
    finally:
        os.environ.pop("FEAST_S3_ENDPOINT_URL", None)  # set by the store for this endpoint
        server.stop()
