"""The one typed settings object.

`config/base.yml` is overlaid by `config/<env>.yml` (env from `LAKEHOUSE_ENV`, default `dev`)
and then by `LAKEHOUSE_*` environment variables (nested keys joined by `__`). Values may
reference the environment as `${VAR}`; that is how secrets and prod endpoints get in, since
`config/` holds references only. A bad, unknown or missing key fails naming the key and file.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_PREFIX = "LAKEHOUSE_"
# LAKEHOUSE_* variables that are not key overrides: the profile, the config folder, and the
# checkout Prefect workers run flows from (prefect.yaml's pull step).
NOT_OVERRIDES = frozenset({"LAKEHOUSE_ENV", "LAKEHOUSE_CONFIG_DIR", "LAKEHOUSE_HOME"})
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# Nothing phones home: every component's own switch, set unless the user chose otherwise.
TELEMETRY_OFF = {
    "SODA_CORE_TELEMETRY_ENABLED": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
    "FEAST_USAGE": "False",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def telemetry_off() -> None:
    for name, value in TELEMETRY_OFF.items():
        os.environ.setdefault(name, value)


class ConfigError(ValueError):
    """A configuration problem, always naming the key and where it came from."""


class _Section(BaseModel):
    # Env values are read as YAML ("2" -> 2); a string field still accepts them.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class LakeSettings(_Section):
    root: str
    landing: str | None = None
    checkpoints: str | None = None
    sources_dir: str


class SparkSettings(_Section):
    master: str
    app_name: str
    driver_memory: str
    shuffle_partitions: int
    delta_package: str
    extra_packages: list[str]
    jars_cache: str
    ui_enabled: bool
    log_level: str
    conf: dict[str, str]

    @field_validator("conf", mode="before")
    @classmethod
    def _conf_as_strings(cls, value: Any) -> Any:
        """Spark settings are strings; YAML `true`/`4` become "true"/"4"."""
        if isinstance(value, dict):
            return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
        return value


class SqlServerSettings(_Section):
    host: str
    port: int


class PrefectSettings(_Section):
    local_api_url: str
    state_dir: str = ".lake/orchestrator"  # `lakehouse orchestrator`: pid and log files


class RaySettings(_Section):
    address: str | None
    num_cpus: int | None
    object_store_memory_mb: int | None
    # The local head `lakehouse ray start` runs (ignored when `address` names a cluster).
    head_port: int = 6379
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8265
    temp_dir: str | None = None  # null = Ray's default (/tmp/ray)


class MlSettings(_Section):
    """Features, training, registry and scoring (ray_jobs/, features/)."""

    delay_threshold_min: int  # the label: arrival more than this many minutes late
    train_start: dt.date  # the time split: train [train_start, train_end], validate to valid_end,
    train_end: dt.date  # test to test_end (tests shrink it to a few weeks)
    valid_end: dt.date
    test_end: dt.date
    num_workers: int  # Ray Train workers
    num_boost_round: int
    early_stopping_rounds: int
    params: dict[str, Any]  # xgboost parameters
    feast_project: str
    online_store: dict[str, Any]  # Feast online store; sqlite without `path` = <lake>/_feast/online.db
    feast_dir: str | None = None  # Feast's local files (exports, SQLite); None = <lake>/_feast (features/store.py)
    feast_registry: str | None = None  # the registry, e.g. s3://bucket/feast/registry.db; None = in feast_dir
    # Failure drill: Ray Train worker 0 SIGKILLs itself once, just after the first checkpoint;
    # FailureConfig restarts the worker group, which resumes from that checkpoint.
    chaos_kill_worker: bool = False




class ServeSettings(_Section):
    """Ray Serve HTTP (serve/): where it listens, request limits, optional bearer-token auth."""

    host: str
    port: int
    config_file: str  # the Serve config (applications); relative to the repo root
    max_body_bytes: int  # larger request bodies get 413
    request_timeout_s: float  # the proxy answers 408 after this long
    query_timeout_s: float  # a data query running longer gets 504
    default_page_rows: int
    max_page_rows: int
    auth_token_env: str  # the environment variable holding the bearer token; unset or empty = no auth


class SeedSettings(_Section):
    start_date: dt.date
    end_date: dt.date


class QualitySettings(_Section):
    """Data-quality contracts (quality/): where the Soda contract YAMLs live."""

    contracts_dir: str = "quality"  # holds <layer>/<table>.yml; relative to the repo root


class ObjectStoreSettings(_Section):
    """The S3 endpoint an s3a:// lake lives on, read by both engines (Spark's s3a, delta-rs).

    Credentials never go here: both engines take them from the environment (AWS_ACCESS_KEY_ID...,
    or a web identity token on Kubernetes).
    """

    endpoint_url: str | None = None  # null = AWS's own; an S3-compatible server otherwise
    region: str = "us-east-1"
    path_style: bool = False  # bucket in the path, not the host name (S3-compatible servers)


class ClusterSettings(_Section):
    """`lakehouse cluster`: the one-machine scale-out cluster (Spark standalone, two Ray nodes, S3).

    Addresses come from the profile itself (spark.master, ray.address and ray.dashboard_port,
    object_store.endpoint_url);
    these are only the processes' sizes, side ports and where their pid, log and temp files go.
    """

    state_dir: str = "/tmp/lakehouse-cluster"  # short: Ray's socket paths must stay under 107 bytes
    worker_cores: int = 2
    worker_memory: str = "3g"
    ray_cpus_per_node: int = 1  # two nodes: 2 CPUs in all
    ray_object_store_memory_mb: int = 512  # per Ray node
    port_base: int = 21000  # Ray's side ports (agents, workers) are taken from [base, base + 2000)


class MonitoringSettings(_Section):
    """Metrics, logs and lineage events (lake/metrics.py, lake/logs.py, lake/openlineage.py).

    Defaults keep everything local: no Pushgateway, JSON log lines on stderr, OpenLineage run
    events as files in the lake.
    """

    pushgateway_url: str | None = None  # e.g. http://127.0.0.1:9091; null = no push
    job: str = "lakehouse"  # the Pushgateway job every push groups under
    freshness_sla_seconds: int = 93600  # exported per table; the freshness alert compares with it
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"
    log_file: str | None = None  # JSON lines also appended here (what Fluent Bit/Vector tail)
    openlineage_sink: Literal["file", "http", "off"] = "file"
    openlineage_dir: str | None = None  # null = <lake root>/_openlineage
    openlineage_url: str | None = None  # the sink `http` posts to, e.g. Marquez: http://host:5000
    openlineage_namespace: str = "lakehouse"


class KafkaSettings(_Section):
    """Kafka: the connection every client uses, and the local broker `lakehouse kafka start` runs.

    Prod sets `bootstrap_servers` and the TLS/SASL keys from the environment (`${VAR}`); the
    broker keys only matter for the local single-node broker (dev and tests).
    """

    bootstrap_servers: str | None = None  # null = the local broker, host:port below
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_ca_location: str | None = None  # PEM file of the CA, when not the system's
    replication_factor: int = 1  # of topics the platform creates
    partitions: int = 2  # of topics the platform creates
    version: str = "4.4.0"  # the local broker's Kafka version (jars from Maven Central)
    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int = 9093
    data_dir: str = ".lake/kafka"  # log segments, config, pid and log file of the local broker
    jars_cache: str = ".cache/kafka"
    heap: str = "512m"
    retention_hours: int = 168
    start_timeout_s: float = 90.0


class StreamSettings(_Section):
    """Streaming ingestion (lake/stream.py): which source feeds the declared event stream."""

    source: Literal["landing", "kafka"] = "landing"  # landing = files appearing in the landing zone
    declaration: str = "lake/streams/flight_events.yml"  # the event stream's declaration (docs/streaming.md)
    trigger_seconds: float = 1.0  # `lakehouse stream`: processing-time trigger of Kafka/landing -> bronze
    max_records_per_trigger: int = 50000  # Kafka: maxOffsetsPerTrigger (bounds a batch after downtime)
    max_files_per_trigger: int = 100  # landing folder: maxFilesPerTrigger
    refine_every_seconds: float = 30.0  # `lakehouse stream --refine`: bronze -> silver trigger


class Settings(_Section):
    env: str
    lake: LakeSettings
    spark: SparkSettings
    sql_server: SqlServerSettings
    prefect: PrefectSettings
    ray: RaySettings
    serve: ServeSettings
    seed: SeedSettings
    ml: MlSettings
    object_store: ObjectStoreSettings = ObjectStoreSettings()
    cluster: ClusterSettings = ClusterSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    kafka: KafkaSettings = KafkaSettings()
    stream: StreamSettings = StreamSettings()
    quality: QualitySettings = QualitySettings()

    # Paths: relative entries resolve against the repo root; URIs (s3a://...) pass through.
    @property
    def lake_root(self) -> str:
        return resolve_path(self.lake.root)

    @property
    def landing_root(self) -> str:
        return resolve_path(self.lake.landing) if self.lake.landing else join(self.lake_root, "landing")

    @property
    def checkpoint_root(self) -> str:
        if self.lake.checkpoints:
            return resolve_path(self.lake.checkpoints)
        return join(self.lake_root, "_checkpoints")

    @property
    def sources_dir(self) -> Path:
        return Path(resolve_path(self.lake.sources_dir))

    def table_path(self, layer: str, name: str) -> str:
        return join(self.lake_root, layer, name)


def is_uri(path: str) -> bool:
    return "://" in path


def resolve_path(path: str) -> str:
    if is_uri(path):
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (REPO_ROOT / p).resolve())


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    return data


def _overlay(base: dict[str, Any], top: dict[str, Any], origin: str, origins: dict[str, str], prefix: str = "") -> None:
    """Merge `top` into `base` in place, recording which file each leaf came from."""
    for key, value in top.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _overlay(base[key], value, origin, origins, dotted + ".")
        else:
            base[key] = value
            origins[dotted] = origin
            if isinstance(value, dict):
                for sub in _leaves(value, dotted + "."):
                    origins[sub] = origin


def _leaves(tree: dict[str, Any], prefix: str) -> list[str]:
    out: list[str] = []
    for key, value in tree.items():
        out.extend(_leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"])
    return out


def _env_overrides(environ: dict[str, str], origins: dict[str, str]) -> dict[str, Any]:
    """`LAKEHOUSE_SPARK__DRIVER_MEMORY=3g` -> {"spark": {"driver_memory": "3g"}}, values read as YAML."""
    tree: dict[str, Any] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in NOT_OVERRIDES:
            continue
        keys = name[len(ENV_PREFIX) :].lower().split("__")
        node = tree
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = yaml.safe_load(raw) if raw else raw  # "3" -> 3, "true" -> True
        origins[".".join(keys)] = f"environment variable {name} (nested keys are joined by '__')"
    return tree


def _substitute(tree: dict[str, Any], environ: dict[str, str], origins: dict[str, str], prefix: str = "") -> None:
    """Replace `${VAR}` references with the environment's values, naming the key when unset."""

    def expand(value: Any, dotted: str) -> Any:
        if not isinstance(value, str):
            return value

        def repl(match: re.Match[str]) -> str:
            var = match.group(1)
            if var not in environ:
                raise ConfigError(
                    f"{origins.get(dotted, '?')}: key '{dotted}' references ${{{var}}}, "
                    "which is not set in the environment"
                )
            return environ[var]

        return _REF.sub(repl, value)

    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            _substitute(value, environ, origins, dotted + ".")
        elif isinstance(value, list):
            tree[key] = [expand(v, dotted) for v in value]
        else:
            tree[key] = expand(value, dotted)


def load_settings(env: str | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Build settings for `env` from the config files and the environment; raises ConfigError."""
    environ = dict(os.environ if environ is None else environ)
    env = env or environ.get("LAKEHOUSE_ENV") or "dev"
    config_dir = Path(environ.get("LAKEHOUSE_CONFIG_DIR") or REPO_ROOT / "config")
    base_file, env_file = config_dir / "base.yml", config_dir / f"{env}.yml"
    if not base_file.is_file():
        raise ConfigError(f"{base_file}: missing (LAKEHOUSE_CONFIG_DIR={config_dir})")
    if not env_file.is_file():
        known = sorted(p.stem for p in config_dir.glob("*.yml") if p.stem != "base")
        raise ConfigError(f"LAKEHOUSE_ENV={env!r}: no {env_file}; known environments: {', '.join(known)}")

    origins: dict[str, str] = {}
    merged: dict[str, Any] = {}
    _overlay(merged, _read_yaml(base_file), str(base_file), origins)
    _overlay(merged, _read_yaml(env_file), str(env_file), origins)
    env_origins: dict[str, str] = {}
    _overlay(merged, _env_overrides(environ, env_origins), "environment", origins)
    origins.update(env_origins)
    _substitute(merged, environ, origins)
    merged["env"] = env
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, origins, base_file, env_file)) from None


def key_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """(dotted key, what is wrong with it) for each error: how config and spec errors are worded."""
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            problems.append((key, f"unknown key '{key}'"))
        elif err["type"] == "missing":
            problems.append((key, f"missing key '{key}'"))
        else:
            problems.append((key, f"key '{key}': {err['msg']} (got {err.get('input')!r})"))
    return problems


def _explain(exc: ValidationError, origins: dict[str, str], base_file: Path, env_file: Path) -> str:
    lines = [f"{origins.get(key) or f'{base_file} or {env_file}'}: {problem}" for key, problem in key_problems(exc)]
    return "invalid configuration:\n  " + "\n  ".join(lines)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, built on first use (never at import)."""
    return load_settings()
