"""monitoring/: Prometheus config and rules checked and unit-tested by promtool, dashboards parsed.

PromQL is parsed by Prometheus's own parser (promtool); metric names are then read from the
expressions and each must be created by some code: a gauge of lake/metrics.py that some module
sets, a metric a Serve app defines in serve/*.py, or one of Ray Serve's own (read from Ray's
installed source), each as Ray exports it. A name nobody creates fails.
"""

from __future__ import annotations

import ast
import datetime as dt
import functools
import importlib.util
import json
import logging
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Gauge

from lake import logs, metrics
from lake.settings import REPO_ROOT

MONITORING = REPO_ROOT / "monitoring"
PROMETHEUS = MONITORING / "prometheus"
RULES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))
RUNBOOK = REPO_ROOT / "docs" / "runbook.md"
DATASOURCE_UID = "lakehouse-prometheus"
ALERTMANAGER = MONITORING / "alertmanager"
LOGS = MONITORING / "logs"
LOG_FILE = "/var/log/lakehouse/lakehouse.jsonl"  # the path docs/runbook.md tells monitoring.log_file to use
# Where the platform's code sets metrics (lake/metrics.py's gauges are set from these packages).
CODE = [p for pkg in ("lake", "ray_jobs", "quality", "serve", "flows") for p in sorted((REPO_ROOT / pkg).rglob("*.py"))]
# How Ray exports a `ray.util.metrics` metric of each kind: `ray_<name><suffix>`.
RAY_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}

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
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]


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


def _string(node: ast.expr | None, names: Mapping[str, str]) -> str | None:
    """The text of a string expression: a literal, a known constant, or an f-string of those."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name | ast.Attribute):
        return names.get(node.id if isinstance(node, ast.Name) else node.attr)
    if isinstance(node, ast.JoinedStr):
        parts = [_string(v.value if isinstance(v, ast.FormattedValue) else v, names) for v in node.values]
        return None if None in parts else "".join(p for p in parts if p is not None)
    return None


def ray_metric_definitions(path: Path, names: Mapping[str, str] | None = None) -> dict[str, str]:
    """name -> kind of every `ray.util.metrics` Counter/Histogram/Gauge a module creates (directly or
    through a helper named counter/histogram/gauge), its name a literal, a constant of the module
    or of lake/metrics.py (`SERVE_*`), or an f-string over `names`."""
    tree = ast.parse(path.read_text())
    known = {k: v for k, v in vars(metrics).items() if isinstance(v, str)}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            known.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
    known.update(names or {})
    found = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        kind = (func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else "").lower()
        if kind not in RAY_SUFFIXES:
            continue
        first = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "name"), None)
        name = _string(first, known)
        if name:
            found[name] = kind
    return found


@functools.cache
def created_names() -> dict[str, str]:
    """Every sample name some code creates -> where it is created."""
    created = {name: "lake/metrics.py" for name in metrics.exported_names()}
    ray = importlib.util.find_spec("ray")
    assert ray is not None and ray.origin, "ray is not installed"
    # Ray Serve's own HTTP metrics are defined per protocol (`serve_num_{protocol_name}_requests`).
    ray_serve = [p for p in sorted((Path(ray.origin).parent / "serve").rglob("*.py")) if "metrics." in p.read_text()]
    sources = [(p, p.relative_to(REPO_ROOT)) for p in sorted((REPO_ROOT / "serve").glob("*.py"))]
    sources += [(p, Path("ray") / p.relative_to(Path(ray.origin).parent)) for p in ray_serve]
    for path, shown in sources:
        for name, kind in ray_metric_definitions(path, {"protocol_name": "http"}).items():
            created.update({f"ray_{name}{suffix}": f"{shown} ({kind})" for suffix in RAY_SUFFIXES[kind]})
    return created


@pytest.mark.parametrize("source", ["rules", "dashboards"])
def test_only_metrics_some_code_creates_are_referenced(source: str) -> None:
    exprs = [r["expr"] for r in rules()] if source == "rules" else [e for _, _, e in panel_exprs()]
    created, missing = created_names(), {}
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric found in {expr!r}"
        missing.update({name: expr for name in sorted(names - set(created))})
    assert not missing, (
        f"{source} name metrics no code creates (not a gauge of lake/metrics.py, nor a ray.util.metrics "
        f"Counter/Histogram/Gauge of serve/*.py or of Ray Serve, as Ray exports them): {missing}"
    )


def test_the_definition_scan_finds_each_way_serve_defines_a_metric(tmp_path: Path) -> None:
    module = tmp_path / "app.py"
    module.write_text(
        "from ray.util import metrics\n"
        "from lake import metrics as lake_metrics\n"
        "from lake.metrics import SERVE_MODEL_INFO\n"
        "LOCAL = 'lakehouse_x_seconds'\n"
        "def make(protocol_name, other):\n"
        "    metrics.Counter('lakehouse_a', 'd', tag_keys=('k',))\n"
        "    metrics.Histogram(LOCAL, 'd', boundaries=[1.0])\n"
        "    metrics.Gauge(name=f'serve_num_ongoing_{protocol_name}_requests')\n"
        "    metrics.Gauge(SERVE_MODEL_INFO, 'd')\n"
        "    metrics.Histogram(lake_metrics.SERVE_BATCH_SIZE, 'd', boundaries=[1.0])\n"
        "    counter('lakehouse_b', 'd', ('t',))\n"
        "    metrics.Counter(other, 'a name it cannot know: skipped')\n"
    )
    assert ray_metric_definitions(module, {"protocol_name": "http"}) == {
        "lakehouse_a": "counter", "lakehouse_x_seconds": "histogram", "serve_num_ongoing_http_requests": "gauge",
        metrics.SERVE_MODEL_INFO: "gauge", metrics.SERVE_BATCH_SIZE: "histogram", "lakehouse_b": "counter",
    }  # fmt: skip
    assert created_names()["ray_serve_num_http_requests_total"].startswith("ray/serve/")


def test_every_gauge_is_set_by_some_code() -> None:
    """A gauge nothing sets would be defined, referenced, and never exported."""
    text = "\n".join(p.read_text() for p in CODE)
    for attr, gauge in vars(metrics).items():
        if isinstance(gauge, Gauge):
            assert re.search(rf"\b{attr}\.labels\(", text), (
                f"lake/metrics.py: {attr} is never set (`{attr}.labels(...)`)"
            )


def test_promtool_tests_feed_the_series_the_code_exports() -> None:
    """Input series of the rule tests: created names, and for our gauges their real labels and values."""
    from ray_jobs.registry import EXPORTED_METRICS

    gauges = {g._name: set(g._labelnames) for g in vars(metrics).values() if isinstance(g, Gauge)}
    series = [
        s["series"] for t in RULE_TESTS for test in yaml.safe_load(t.read_text())["tests"] for s in test["input_series"]
    ]
    selectors = series + [r["expr"] for r in rules()]
    for text in series:
        name = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", text)
        assert name and name.group(0) in created_names(), f"{text}: no code creates this series"
        labels = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*=", text.split("{", 1)[1])) if "{" in text else set()
        if name.group(0) in gauges:
            assert labels <= gauges[name.group(0)] | {"job", "instance"}, f"{text}: labels the gauge does not have"
    # lakehouse_model_metric{metric="..."}: the values ray_jobs/registry.py exports.
    used = {m for text in selectors for m in re.findall(r'lakehouse_model_metric\{[^}]*\bmetric="([^"]+)"', text)}
    assert used and used <= set(EXPORTED_METRICS), f"model metrics nobody exports: {used - set(EXPORTED_METRICS)}"


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


def test_alertmanager_notifications_link_the_runbook_through_one_base() -> None:
    config = yaml.safe_load((ALERTMANAGER / "alertmanager.yml").read_text())
    templates = [p for pattern in config["templates"] for p in sorted(ALERTMANAGER.glob(pattern))]
    assert templates == [ALERTMANAGER / "templates" / "lakehouse.tmpl"]
    text = templates[0].read_text()
    assert len(re.findall(r'define "lakehouse\.runbook_base"', text)) == 1
    receivers = {r["name"]: r for r in config["receivers"]}
    routed = {config["route"]["receiver"], *(r["receiver"] for r in config["route"]["routes"])}
    assert routed == set(receivers)
    for receiver in receivers.values():
        for slack in receiver["slack_configs"]:
            assert slack["text"] == '{{ template "lakehouse.text" . }}' and "api_url" not in slack  # secrets from files
    assert (
        "runbook_base" in RUNBOOK.read_text()
        and "monitoring/alertmanager/templates/lakehouse.tmpl" in RUNBOOK.read_text()
    )


def test_amtool_renders_each_alerts_runbook_link_absolute(tmp_path: Path) -> None:
    """Alertmanager's own tool checks the config and renders the notification of every alert."""
    amtool = shutil.which("amtool")
    assert amtool, "amtool is missing: `make install` installs it (Debian package prometheus-alertmanager)"
    checked = subprocess.run(
        [amtool, "check-config", "alertmanager.yml"], cwd=ALERTMANAGER, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    alerts = [
        {"Status": "firing", "Labels": {"alertname": r["alert"]}, "Annotations": r["annotations"]} for r in rules()
    ]
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"Status": "firing", "CommonLabels": {}, "Alerts": alerts}))
    rendered = subprocess.run(
        [amtool, "template", "render", f"--template.glob={ALERTMANAGER / 'templates' / '*.tmpl'}",
         f"--template.data={data}", '--template.text={{ template "lakehouse.runbook_base" }}\n{{ template "lakehouse.text" . }}'],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    base, *lines = rendered.stdout.strip().splitlines()
    assert base.startswith("https://")
    links = [line.removeprefix("runbook: ") for line in lines if line.startswith("runbook: ")]
    assert links == [f"{base}docs/runbook.md#{r['alert'].lower()}" for r in rules()]


def fluent_bit_sections(path: Path) -> list[tuple[str, dict[str, str]]]:
    """Fluent Bit's classic format: `[SECTION]` headers, then indented `Key value` lines; `#` comments."""
    sections: list[tuple[str, dict[str, str]]] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append((line[1:-1].upper(), {}))
            continue
        assert sections and raw[:1].isspace(), f"{path.name}: {raw!r} is outside a section or not indented"
        key, _, value = line.partition(" ")
        assert value.strip(), f"{path.name}: {key} has no value"
        sections[-1][1][key.lower()] = value.strip()
    return sections


def test_fluent_bit_config_is_complete(tmp_path: Path) -> None:
    sections = fluent_bit_sections(LOGS / "fluent-bit.conf")
    assert [name for name, _ in sections] == ["SERVICE", "INPUT", "OUTPUT"]
    service, tail, loki = (keys for _, keys in sections)
    parsers_file = LOGS / service["parsers_file"]  # relative: looked up next to fluent-bit.conf
    assert parsers_file.is_file()
    parsers = {keys["name"]: keys for name, keys in fluent_bit_sections(parsers_file) if name == "PARSER"}
    assert (tail["name"], tail["path"]) == ("tail", LOG_FILE) and tail["db"]
    parser = parsers[tail["parser"]]  # the input's parser is defined in the parsers file
    assert (parser["format"], parser["time_key"]) == ("json", "ts")
    # The time format reads the timestamps lake/logs.py writes (Fluent Bit's %L: fractional seconds).
    logger = logging.getLogger("test.fluent_bit")
    line = json.loads(logs.JsonFormatter().format(logger.makeRecord("t", logging.INFO, __file__, 1, "m", None, None)))
    dt.datetime.strptime(line[parser["time_key"]], parser["time_format"].replace("%L", "%f"))
    assert (loki["name"], loki["match"]) == ("loki", tail["tag"])
    labels = dict(item.strip().split("=", 1) for item in loki["labels"].split(","))
    assert labels["job"] == "lakehouse"
    assert {v[1:] for v in labels.values() if v.startswith("$")} <= set(line), "a label reads a field the lines lack"


def test_vector_config_is_complete() -> None:
    config = yaml.safe_load((LOGS / "vector.yaml").read_text())
    assert config["data_dir"]
    ((name, source),) = config["sources"].items()
    assert source == {"type": "file", "include": [LOG_FILE]}
    ((parsed, remap),) = config["transforms"].items()
    assert (remap["type"], remap["inputs"]) == ("remap", [name])
    assert "parse_json(.message)" in remap["source"] and "parse_timestamp(.ts" in remap["source"]
    (sink,) = config["sinks"].values()
    assert (sink["type"], sink["inputs"], sink["encoding"]["codec"]) == ("loki", [parsed], "json")
    templated = {re.fullmatch(r"\{\{ (\w+) \}\}", v) for v in sink["labels"].values()} - {None}
    fields = {"ts", "level", "logger", "message", *logs.FIELDS}
    assert {m.group(1) for m in templated if m} <= fields
    for field in {m.group(1) for m in templated if m}:  # a label must always render: the remap fills it
        assert f".{field} = string(.{field}) ??" in remap["source"]


def test_the_runbook_points_at_the_shipped_log_configs() -> None:
    text = RUNBOOK.read_text()
    for path in ("monitoring/logs/fluent-bit.conf", "monitoring/logs/parsers.conf", "monitoring/logs/vector.yaml"):
        assert path in text and (REPO_ROOT / path).is_file()
    assert f"LAKEHOUSE_MONITORING__LOG_FILE={LOG_FILE}" in text
