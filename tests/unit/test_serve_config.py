"""serve/config.yaml: Serve's own schema, the settings' HTTP options on top, the environment passed on."""

from __future__ import annotations

from pathlib import Path

import pytest

from lake.settings import Settings
from serve.deploy import DeployError, load_config


def test_config_validates_and_takes_host_port_from_settings(settings: Settings) -> None:
    local = settings.model_copy(update={"serve": settings.serve.model_copy(update={"port": 18123})})
    environ = {"LAKEHOUSE_LAKE__ROOT": "/data/lake", "SERVE_AUTH_TOKEN": "t0ken", "UNRELATED": "x"}
    config = load_config(local, environ=environ)
    assert (config.http_options.host, config.http_options.port) == ("127.0.0.1", 18123)
    apps = {app.name: app for app in config.applications}
    assert set(apps) == {"data", "model"}
    assert (apps["data"].route_prefix, apps["model"].route_prefix) == ("/", "/v1/models")
    env_vars = apps["model"].runtime_env["env_vars"]
    assert env_vars["LAKEHOUSE_LAKE__ROOT"] == "/data/lake" and env_vars["SERVE_AUTH_TOKEN"] == "t0ken"
    assert "UNRELATED" not in env_vars and env_vars["RAY_USAGE_STATS_ENABLED"] == "0"
    shed = {d.name: d.max_queued_requests for app in config.applications for d in app.deployments}
    assert all(isinstance(v, int) and v > 0 for v in shed.values())  # overload sheds, never unbounded


def test_bad_config_names_the_file_and_key(settings: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text(
        "applications:\n  - name: data\n    import_path: serve.data_app:build\n"
        "    deployments:\n      - name: DataAPI\n        max_queued_requests: lots\n"
    )
    with pytest.raises(DeployError) as err:
        load_config(settings, str(bad), environ={})
    assert str(bad) in str(err.value) and "max_queued_requests" in str(err.value)
