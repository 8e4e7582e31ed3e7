"""Source specs: every declared source loads; a bad spec fails naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lake.settings import REPO_ROOT, Settings
from lake.source import SourceError, SourceSpec, declared_sources, find_source, load_spec

SOURCES_DIR = REPO_ROOT / "lake" / "sources"
GOOD = {
    "name": "orders",
    "format": "csv",
    "path": "orders/orders_*.csv",
    "target": "bronze.orders",
    "keys": ["order_id"],
    "schema": {"order_id": "bigint", "amount": "decimal(10, 2)", "placed_at": "timestamp"},
}


def write(tmp_path: Path, data: object, name: str = "orders.yml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False) if not isinstance(data, str) else data)
    return path


@pytest.mark.parametrize("file", sorted(SOURCES_DIR.glob("*.yml")), ids=lambda p: p.stem)
def test_every_declared_source_loads(file: Path) -> None:
    spec = load_spec(file)
    assert spec.name == file.stem
    assert spec.target == f"bronze.{spec.name}"
    assert spec.keys, "declare the natural key"
    assert spec.schema_, "declared sources pin their schema"
    assert set(spec.keys) <= set(spec.schema_), "keys are columns of the schema"


def test_declared_sources_by_name(settings: Settings) -> None:
    specs = declared_sources(settings)
    assert {"flights", "weather", "planes", "airports", "airlines"} <= set(specs)
    assert find_source(settings, "flights").format == "csv"
    with pytest.raises(SourceError, match=r"unknown source 'nope'.*flights"):
        find_source(settings, "nope")


def test_good_spec_and_defaults(tmp_path: Path, settings: Settings) -> None:
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.description == ""
    assert spec.owner == "data-platform@example.org"
    assert spec.options == {}
    assert spec.table_name == "orders"
    assert spec.ddl() == "`order_id` bigint, `amount` decimal(10, 2), `placed_at` timestamp"
    # Relative paths are under the landing zone; absolute paths and URIs are kept.
    assert spec.glob(settings) == f"{settings.landing_root}/orders/orders_*.csv"
    assert SourceSpec.model_validate({**GOOD, "path": "/data/x/*.csv"}).glob(settings) == "/data/x/*.csv"
    assert SourceSpec.model_validate({**GOOD, "path": "s3a://b/x/*.csv"}).glob(settings) == "s3a://b/x/*.csv"


def test_schema_is_optional(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, {k: v for k, v in GOOD.items() if k != "schema"}))
    assert spec.schema_ is None
    assert spec.ddl() is None


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, {**GOOD, "fromat": "csv"})
    with pytest.raises(SourceError) as err:
        load_spec(path)
    assert str(path) in str(err.value)
    assert "unknown key 'fromat'" in str(err.value)


@pytest.mark.parametrize("key", ["name", "format", "path", "target"])
def test_missing_key_names_file_and_key(tmp_path: Path, key: str) -> None:
    path = write(tmp_path, {k: v for k, v in GOOD.items() if k != key})
    with pytest.raises(SourceError) as err:
        load_spec(path)
    assert str(path) in str(err.value)
    assert f"missing key '{key}'" in str(err.value)


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        ({"schema": {"amount": "money"}}, "schema", "money"),
        ({"schema": {"_amount": "int"}}, "schema", "reserved"),
        ({"format": "xml"}, "format", "csv"),
        ({"name": "Orders-2"}, "name", "Orders-2"),
        ({"keys": "order_id"}, "keys", "list"),
        ({"options": {"sep": [";"]}}, "options.sep", ""),
    ],
)
def test_bad_value_names_file_and_key(tmp_path: Path, change: dict[str, object], key: str, words: str) -> None:
    path = write(tmp_path, {**GOOD, **change})
    with pytest.raises(SourceError) as err:
        load_spec(path)
    message = str(err.value)
    assert str(path) in message
    assert f"key '{key}" in message
    assert words in message


@pytest.mark.parametrize("target", ["silver.orders", "orders", "bronze.", "bronze.Orders", "gold.x.y"])
def test_target_must_be_a_bronze_table(tmp_path: Path, target: str) -> None:
    path = write(tmp_path, {**GOOD, "target": target})
    with pytest.raises(SourceError) as err:
        load_spec(path)
    assert str(path) in str(err.value)
    assert "key 'target'" in str(err.value)
    assert "bronze.<name>" in str(err.value)


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    path = write(tmp_path, {"name": "orders", "format": "csv", "path": "x", "color": "red"})
    with pytest.raises(SourceError) as err:
        load_spec(path)
    assert "missing key 'target'" in str(err.value)
    assert "unknown key 'color'" in str(err.value)


def test_not_a_mapping_or_not_yaml_or_not_there(tmp_path: Path) -> None:
    path = write(tmp_path, "- a\n- b\n")
    with pytest.raises(SourceError, match="mapping"):
        load_spec(path)
    path = write(tmp_path, "name: [unclosed\n")
    with pytest.raises(SourceError, match="not valid YAML"):
        load_spec(path)
    with pytest.raises(SourceError, match="not found"):
        load_spec(tmp_path / "missing.yml")


def test_a_name_declared_twice_is_refused(tmp_path: Path, settings: Settings) -> None:
    write(tmp_path, GOOD, "a.yml")
    write(tmp_path, GOOD, "b.yml")
    elsewhere = settings.model_copy(update={"lake": settings.lake.model_copy(update={"sources_dir": str(tmp_path)})})
    with pytest.raises(SourceError, match="declared twice") as err:
        declared_sources(elsewhere)
    assert str(tmp_path / "b.yml") in str(err.value)
