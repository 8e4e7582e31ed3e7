"""monitoring/: Prometheus config and rules checked and unit-tested by promtool, dashboards parsed.

PromQL is parsed by Prometheus's own parser (promtool); metric names are then read from the
expressions and must be ones lake/metrics.py exports (or Ray Serve's, as Ray exports them).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lake.metrics import referenceable_names
from lake.settings import REPO_ROOT

MONITORING = REPO_ROOT / "monitoring"
PROMETHEUS = MONITORING / "prometheus"
RULES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))
RUNBOOK = REPO_ROOT / "docs" / "runbook.md"
DATASOURCE_UID = "lakehouse-prometheus"

# Words in PromQL that are not metric names.
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan",
}  # fmt: skip


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool is missing: `make install` installs the Debian package prometheus"
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def metric_names(expr: str) -> set[str]:
    """Metric names in an expression promtool already accepted: identifiers that are not
    functions, keywords, label names (inside {} or after by/on/...), or durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word, rest = m.group(0), text[m.end() :].lstrip()
        if word.lower() in _KEYWORDS or rest.startswith("("):
            continue
        names.add(word)
    return names


def rules() -> list[dict[str, Any]]:
    return [rule for path in RULES for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def panel_exprs() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr) for every query of every panel."""
    out = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            out.extend((path.name, panel["title"], t["expr"]) for t in panel.get("targets", []))
    return out


def test_the_prometheus_config_is_valid() -> None:
    result = promtool("check", "config", "--syntax-only", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["pushgateway"]["honor_labels"] is True  # keep the job/table labels the steps pushed
    assert jobs["ray"]["file_sd_configs"][0]["files"] == ["/tmp/ray/prom_metrics_service_discovery.json"]


def test_the_rules_are_valid_and_each_has_a_promtool_test() -> None:
    result = promtool("check", "rules", *[str(p) for p in RULES])
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {Path(r).name for t in RULE_TESTS for r in yaml.safe_load(t.read_text())["rule_files"]}
    assert tested == {p.name for p in RULES}
    alerts = {r["alert"] for r in rules()}
    exercised = {
        case["alertname"]
        for t in RULE_TESTS
        for test in yaml.safe_load(t.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts == exercised, f"alerts never shown firing by a test: {alerts - exercised}"


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", *[str(p.relative_to(PROMETHEUS)) for p in RULE_TESTS])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_issue_alerts_exist() -> None:
    alerts = {r["alert"] for r in rules()}
    assert {
        "GoldTableStale", "QualityChecksFailing", "StreamingLagHigh", "Serve5xxRateHigh", "ServeP99LatencyHigh",
        "ModelAucBelowThreshold", "PredictionDrift",
    } <= alerts  # fmt: skip


def test_every_alert_links_to_its_runbook_entry() -> None:
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("## ")
    }
    for rule in rules():
        url = rule["annotations"]["runbook_url"]
        assert url == f"docs/runbook.md#{rule['alert'].lower()}", url
        assert url.split("#", 1)[1] in anchors, f"{rule['alert']}: docs/runbook.md has no '## {rule['alert']}'"


@pytest.mark.parametrize("source", ["rules", "dashboards"])
def test_only_exported_metrics_are_referenced(source: str) -> None:
    exprs = [r["expr"] for r in rules()] if source == "rules" else [e for _, _, e in panel_exprs()]
    known = referenceable_names()
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric found in {expr!r}"
        assert names <= known, f"{expr!r} names {names - known}, which lake/metrics.py does not export"


def test_metric_name_extraction() -> None:
    expr = 'sum by (application, le) (rate(ray_serve_x_bucket{status_code=~"5.."}[5m])) / on (a) group_left b_c > 0.5'
    assert metric_names(expr) == {"ray_serve_x_bucket", "b_c"}


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """Each panel query becomes a recording rule, so Prometheus's own parser checks it."""
    exprs = panel_exprs()
    assert len(DASHBOARDS) == 4 and exprs
    groups = [{"name": "panels", "rules": [{"record": f"panel:{i}", "expr": e} for i, (_, _, e) in enumerate(exprs)]}]
    as_rules = tmp_path / "panels.yml"
    as_rules.write_text(yaml.safe_dump({"groups": groups}))
    result = promtool("check", "rules", str(as_rules))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(exprs)} rules found" in result.stdout


def test_dashboards_use_the_provisioned_datasource_by_uid() -> None:
    provisioned = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert [d["uid"] for d in provisioned["datasources"]] == [DATASOURCE_UID]
    uids = set()
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        assert board["uid"] and board["panels"], path.name
        for panel in board["panels"]:
            uids.add(panel["datasource"]["uid"])
            uids.update(t["datasource"]["uid"] for t in panel["targets"])
    assert uids == {DATASOURCE_UID}
    provider = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/lakehouse.yml").read_text())
    assert (REPO_ROOT / provider["providers"][0]["options"]["path"]).resolve() == DASHBOARDS[0].parent
