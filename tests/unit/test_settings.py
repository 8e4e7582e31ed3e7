"""Settings: base < env file < LAKEHOUSE_* variables, `${VAR}` references, errors that name the key."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import yaml

from lake.settings import REPO_ROOT, ConfigError, load_settings

BASE = """
lake:
  root: .lake/base
  landing: null
  checkpoints: null
  sources_dir: lake/sources
spark:
  master: local[2]
  app_name: lakehouse
  driver_memory: 2g
  shuffle_partitions: 4
  delta_package: io.delta:delta-spark_4.2_2.13:4.4.0
  extra_packages: []
  jars_cache: .cache/ivy
  ui_enabled: false
  log_level: WARN
  conf: {}
sql_server:
  host: 127.0.0.1
  port: 10000
prefect:
  local_api_url: http://127.0.0.1:4200/api
ray:
  address: null
  num_cpus: 2
  object_store_memory_mb: 512
serve:
  host: 127.0.0.1
  port: 8000
  config_file: serve/config.yaml
  max_body_bytes: 1048576
  request_timeout_s: 30
  query_timeout_s: 10
  default_page_rows: 100
  max_page_rows: 10000
  auth_token_env: SERVE_AUTH_TOKEN
seed:
  start_date: 2013-01-01
  end_date: 2013-12-31
ml:
  delay_threshold_min: 15
  train_start: 2013-01-01
  train_end: 2013-10-31
  valid_end: 2013-11-30
  test_end: 2013-12-31
  num_workers: 2
  num_boost_round: 10
  early_stopping_rounds: 5
  params: {objective: "binary:logistic"}
  feast_project: lakehouse
  online_store: {type: sqlite}
"""


@pytest.fixture()
def config_dir(tmp_path: Path) -> Path:
    d = tmp_path / "config"
    d.mkdir()
    (d / "base.yml").write_text(BASE)
    (d / "dev.yml").write_text("lake:\n  root: .lake/dev\n")
    (d / "staging.yml").write_text("spark:\n  shuffle_partitions: 8\n  driver_memory: 3g\n")
    return d


def env(config_dir: Path, **extra: str) -> dict[str, str]:
    """A clean environment: only what the test sets, never the test run's own LAKEHOUSE_*."""
    return {"LAKEHOUSE_CONFIG_DIR": str(config_dir), **extra}


def test_defaults_to_dev_and_reads_base(config_dir: Path) -> None:
    s = load_settings(environ=env(config_dir))
    assert s.env == "dev"
    assert s.lake.root == ".lake/dev"  # dev.yml over base.yml
    assert s.spark.shuffle_partitions == 4  # from base.yml
    assert s.seed.start_date == dt.date(2013, 1, 1)
    assert s.ray.address is None


def test_overlay_order_base_then_env_file_then_variables(config_dir: Path) -> None:
    s = load_settings(environ=env(config_dir, LAKEHOUSE_ENV="staging"))
    assert s.env == "staging"
    assert s.lake.root == ".lake/base"  # staging.yml leaves it alone
    assert s.spark.shuffle_partitions == 8  # staging.yml beats base.yml
    assert s.spark.driver_memory == "3g"

    s = load_settings(
        environ=env(config_dir, LAKEHOUSE_ENV="staging", LAKEHOUSE_SPARK__SHUFFLE_PARTITIONS="16"),
    )
    assert s.spark.shuffle_partitions == 16  # the variable beats staging.yml
    assert s.spark.driver_memory == "3g"  # siblings of an overridden key survive


def test_explicit_env_argument_beats_lakehouse_env(config_dir: Path) -> None:
    s = load_settings("staging", environ=env(config_dir, LAKEHOUSE_ENV="dev"))
    assert s.env == "staging"


def test_variables_nest_with_double_underscore_and_are_yaml_typed(config_dir: Path) -> None:
    s = load_settings(
        environ=env(
            config_dir,
            LAKEHOUSE_SPARK__UI_ENABLED="true",
            LAKEHOUSE_SQL_SERVER__PORT="10001",
            LAKEHOUSE_RAY__ADDRESS="ray://head:10001",
            LAKEHOUSE_RAY__NUM_CPUS="null",
            LAKEHOUSE_SPARK__EXTRA_PACKAGES="[a:b:1, c:d:2]",
            LAKEHOUSE_SPARK__CONF__MY_SETTING="fast",
            LAKEHOUSE_SEED__END_DATE="2013-01-31",
        )
    )
    assert s.spark.ui_enabled is True
    assert s.sql_server.port == 10001
    assert s.ray.address == "ray://head:10001"
    assert s.ray.num_cpus is None
    assert s.spark.extra_packages == ["a:b:1", "c:d:2"]
    assert s.seed.end_date == dt.date(2013, 1, 31)
    # Names are lowercased; a mapping like spark.conf gets the key as written after __.
    assert s.spark.conf == {"my_setting": "fast"}


def test_unrelated_variables_are_ignored(config_dir: Path) -> None:
    s = load_settings(environ=env(config_dir, LAKEHOUSEX="1", OTHER__THING="2", SPARK_HOME="/x"))
    assert s.spark.shuffle_partitions == 4


def test_reference_is_substituted_from_the_environment(config_dir: Path) -> None:
    (config_dir / "prod.yml").write_text(
        "lake:\n  root: ${LAKE_BUCKET}/prod\nray:\n  address: ${RAY_ADDRESS}\n"
        "spark:\n  extra_packages: ['${EXTRA_PKG}']\n"
    )
    s = load_settings(
        "prod", environ=env(config_dir, LAKE_BUCKET="s3a://acme", RAY_ADDRESS="ray://x:1", EXTRA_PKG="g:a:1")
    )
    assert s.lake.root == "s3a://acme/prod"
    assert s.lake_root == "s3a://acme/prod"  # URIs pass through untouched
    assert s.ray.address == "ray://x:1"
    assert s.spark.extra_packages == ["g:a:1"]


def test_unset_reference_names_key_and_file(config_dir: Path) -> None:
    prod = config_dir / "prod.yml"
    prod.write_text("spark:\n  master: ${SPARK_MASTER_URL}\n")
    with pytest.raises(ConfigError) as err:
        load_settings("prod", environ=env(config_dir))
    message = str(err.value)
    assert "spark.master" in message
    assert "SPARK_MASTER_URL" in message
    assert str(prod) in message


def test_unset_reference_in_a_list_names_key_and_file(config_dir: Path) -> None:
    staging = config_dir / "staging.yml"
    staging.write_text("spark:\n  extra_packages: [a:b:1, '${EXTRA_PACKAGE}']\n")
    with pytest.raises(ConfigError) as err:
        load_settings("staging", environ=env(config_dir))
    message = str(err.value)
    assert "spark.extra_packages" in message
    assert "EXTRA_PACKAGE" in message
    assert str(staging) in message


def test_reference_in_a_variable_is_substituted_too(config_dir: Path) -> None:
    s = load_settings(environ=env(config_dir, LAKEHOUSE_SPARK__MASTER="${MASTER}", MASTER="spark://m:7077"))
    assert s.spark.master == "spark://m:7077"


def test_unknown_key_in_env_file_names_key_and_file(config_dir: Path) -> None:
    staging = config_dir / "staging.yml"
    staging.write_text("spark:\n  shuffle_partitons: 8\n")  # sic
    with pytest.raises(ConfigError) as err:
        load_settings("staging", environ=env(config_dir))
    message = str(err.value)
    assert "unknown key 'spark.shuffle_partitons'" in message
    assert str(staging) in message


def test_unknown_top_level_section_names_file(config_dir: Path) -> None:
    staging = config_dir / "staging.yml"
    staging.write_text("pulsar:\n  brokers: localhost:9092\n")
    with pytest.raises(ConfigError) as err:
        load_settings("staging", environ=env(config_dir))
    assert "'pulsar'" in str(err.value)
    assert str(staging) in str(err.value)


def test_unknown_key_from_a_variable_says_environment(config_dir: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env(config_dir, LAKEHOUSE_SPARK__NO_SUCH_KEY="1"))
    assert "spark.no_such_key" in str(err.value)
    assert "environment" in str(err.value)


def test_wrong_type_names_the_key_and_the_value(config_dir: Path) -> None:
    staging = config_dir / "staging.yml"
    staging.write_text("spark:\n  shuffle_partitions: lots\n")
    with pytest.raises(ConfigError) as err:
        load_settings("staging", environ=env(config_dir))
    message = str(err.value)
    assert "spark.shuffle_partitions" in message
    assert "lots" in message
    assert str(staging) in message


def test_wrong_type_from_a_variable(config_dir: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env(config_dir, LAKEHOUSE_SQL_SERVER__PORT="eighty"))
    assert "sql_server.port" in str(err.value)
    assert "environment" in str(err.value)


def test_missing_key_is_named(config_dir: Path) -> None:
    base = yaml.safe_load(BASE)
    del base["spark"]["master"]
    (config_dir / "base.yml").write_text(yaml.safe_dump(base))
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env(config_dir))
    assert "missing key 'spark.master'" in str(err.value)


def test_unknown_env_lists_the_known_ones(config_dir: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env(config_dir, LAKEHOUSE_ENV="qa"))
    message = str(err.value)
    assert "'qa'" in message
    assert "dev, staging" in message
    assert "base" not in message.split("known environments:")[1]


def test_missing_base_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"base\.yml: missing"):
        load_settings(environ={"LAKEHOUSE_CONFIG_DIR": str(tmp_path)})


def test_invalid_yaml_names_file(config_dir: Path) -> None:
    staging = config_dir / "staging.yml"
    staging.write_text("spark: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as err:
        load_settings("staging", environ=env(config_dir))
    assert str(staging) in str(err.value)


def test_relative_paths_resolve_against_the_repo_root(config_dir: Path, tmp_path: Path) -> None:
    s = load_settings(environ=env(config_dir))
    assert s.lake_root == str(REPO_ROOT / ".lake" / "dev")
    assert s.landing_root == str(REPO_ROOT / ".lake" / "dev" / "landing")
    assert s.checkpoint_root == str(REPO_ROOT / ".lake" / "dev" / "_checkpoints")
    assert s.sources_dir == REPO_ROOT / "lake" / "sources"
    assert s.table_path("silver", "flights") == str(REPO_ROOT / ".lake" / "dev" / "silver" / "flights")

    absolute = tmp_path / "elsewhere"
    s = load_settings(
        environ=env(
            config_dir,
            LAKEHOUSE_LAKE__ROOT=str(absolute),
            LAKEHOUSE_LAKE__LANDING="inbox",
            LAKEHOUSE_LAKE__CHECKPOINTS="s3a://bucket/ckpt",
        )
    )
    assert s.lake_root == str(absolute)  # absolute stays as is
    assert s.landing_root == str(REPO_ROOT / "inbox")
    assert s.checkpoint_root == "s3a://bucket/ckpt"


def test_settings_are_frozen(config_dir: Path) -> None:
    s = load_settings(environ=env(config_dir))
    with pytest.raises(ValueError):
        s.spark.master = "local[8]"  # type: ignore[misc]


@pytest.mark.parametrize("name", ["dev", "test"])
def test_shipped_profiles_load(name: str, tmp_path: Path) -> None:
    s = load_settings(name, environ={"LAKEHOUSE_LAKE__ROOT": str(tmp_path)})
    assert s.env == name
    assert s.lake_root == str(tmp_path)


def test_shipped_prod_profile_needs_its_references() -> None:
    prod = REPO_ROOT / "config" / "prod.yml"
    refs = sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", prod.read_text())))
    assert refs, "prod.yml takes its endpoints from the environment"
    # Whichever reference is met first (file order) is named.
    with pytest.raises(ConfigError, match="|".join(re.escape("${" + r + "}") for r in refs)) as err:
        load_settings("prod", environ={})
    assert str(prod) in str(err.value)


def test_shipped_prod_profile_loads_when_its_references_are_set() -> None:
    prod = REPO_ROOT / "config" / "prod.yml"
    refs = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", prod.read_text()))
    environ = {var: f"value-of-{var.lower()}" for var in refs}
    s = load_settings("prod", environ=environ)
    assert s.env == "prod"
    dumped = s.model_dump_json()
    assert all(value in dumped for value in environ.values())


def test_shipped_cluster_profile_puts_the_lake_in_a_bucket_for_both_engines() -> None:
    """`cluster`: Spark's s3a and delta-rs get the same endpoint, from one `object_store` section."""
    from lake.io import storage_options
    from lake.spark import spark_conf

    s = load_settings("cluster", environ={})
    assert s.lake_root.startswith("s3a://") and s.spark.master.startswith("spark://")
    assert s.ray.address and s.object_store.endpoint_url
    assert any(p.startswith("org.apache.hadoop:hadoop-aws:") for p in s.spark.extra_packages)
    conf = spark_conf(s)
    assert conf["spark.hadoop.fs.s3a.endpoint"] == s.object_store.endpoint_url
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"  # a local http endpoint
    assert not any(k.startswith("spark.hadoop.fs.s3a.") and "key" in k for k in conf)  # credentials: environment only
    options = storage_options(s)
    assert options["AWS_ENDPOINT_URL"] == s.object_store.endpoint_url
    assert options["AWS_ALLOW_HTTP"] == "true" and options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] == "false"
    # A local lake gets no object-store settings at all.
    local = load_settings("dev", environ={})
    assert storage_options(local) == {} and not any("s3a" in k for k in spark_conf(local))
