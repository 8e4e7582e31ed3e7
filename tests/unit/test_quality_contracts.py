"""Contracts as files: one per table, key checks present, Soda's schema, actions, routing rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lake.settings import Settings, load_settings
from lake.tables import registry
from quality import contracts
from quality.contracts import ContractError
from quality.jobs import job_tables


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings("test", environ={})


def write(tmp_path: Path, table: str, doc: object) -> Settings:
    layer, name = table.split(".")
    (tmp_path / layer).mkdir(parents=True, exist_ok=True)
    (tmp_path / layer / f"{name}.yml").write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    base = load_settings("test", environ={})
    return base.model_copy(update={"quality": base.quality.model_copy(update={"contracts_dir": str(tmp_path)})})


def keys_of(table: str) -> tuple[str, ...]:
    return registry()[table].keys if table in registry() else job_tables()[table]


@pytest.mark.parametrize("table", sorted([*registry(), *job_tables()]))
def test_every_table_has_a_valid_contract_with_key_checks(settings: Settings, table: str) -> None:
    contract = contracts.load(settings, table)
    assert contract is not None, f"{table} has no contract at {contracts.contract_path(settings, table)}"
    assert contracts.schema_errors(contract.doc) == []
    keys = keys_of(table)
    missing = {c.column for c in contract.checks if c.type == "missing"}
    assert set(keys) <= missing, f"{table}: key columns without a missing check: {set(keys) - missing}"
    unique = [c for c in contract.checks if c.type == "duplicate"]
    assert any(
        (c.column is not None and (c.column,) == keys) or tuple(c.config.get("columns", ())) == keys for c in unique
    ), f"{table}: no duplicate check on its key {keys}"


def test_real_data_facts_are_warnings_not_drops(settings: Settings) -> None:
    flights = contracts.load(settings, "silver.flights")
    assert flights is not None
    by_column = {(c.column, c.reference): c.action for c in flights.checks if c.reference}
    # airports lacks BQN/SJU/STT/PSE and planes lacks many tail numbers: those rows stay.
    assert by_column[("dest", "silver.airports")] == "warn"
    assert by_column[("tailnum", "silver.planes")] == "warn"
    assert by_column[("carrier", "silver.airlines")] == "fail"


def test_drop_rules_compile_to_spark_predicates(tmp_path: Path) -> None:
    doc = {
        "dataset": "lakehouse/silver/airlines",
        "columns": [
            {"name": "carrier", "checks": [
                {"missing": {"missing_values": [""], "attributes": {"action": "drop"}}},
                {"invalid": {"valid_values": ["AA", "B6"], "filter": "name IS NOT NULL", "attributes": {"action": "drop"}}},
            ]},
            {"name": "seats", "checks": [{"invalid": {"name": "seats", "valid_min": 1, "attributes": {"action": "warn"}}}]},
        ],
        "checks": [{"failed_rows": {"name": "odd", "expression": "seats > 900"}}],  # always `fail`
    }  # fmt: skip
    contract = contracts.load(write(tmp_path, "silver.airlines", doc), "silver.airlines")
    assert contract is not None
    assert contract.rules("drop") == {
        "carrier missing": "NOT coalesce((`carrier` IS NULL OR `carrier` IN ('')), FALSE)",
        "carrier invalid": (
            "NOT coalesce(((name IS NOT NULL) AND (NOT (`carrier` IS NULL) AND (`carrier` NOT IN ('AA', 'B6')))), FALSE)"
        ),
    }
    assert list(contract.rules("warn")) == ["seats"]
    assert [c.action for c in contract.checks] == ["fail", "drop", "drop", "warn"]


@pytest.mark.parametrize(
    ("table", "doc", "message"),
    [
        ("gold.route_monthly", {"dataset": "lakehouse/gold/route_monthly", "columns": [
            {"name": "origin", "checks": [{"missing": {"attributes": {"action": "drop"}}}]}]},
         "only silver contracts"),
        ("silver.planes", {"dataset": "lakehouse/silver/planes", "columns": [
            {"name": "seats", "checks": [{"missing": {"attributes": {"action": "skip"}}}]}]},
         "must be one of warn, drop, fail"),
        ("silver.planes", {"dataset": "lakehouse/silver/planes", "columns": [
            {"name": "tailnum", "checks": [{"invalid": {"valid_reference_data": {
                "dataset": "lakehouse/silver/flights", "column": "tailnum"}, "attributes": {"action": "drop"}}}]}]},
         "cannot route rows"),
        ("silver.planes", {"dataset": "lakehouse/silver/planes", "columns": [
            {"name": "a", "checks": [{"missing": {"name": "x"}}]}, {"name": "b", "checks": [{"missing": {"name": "x"}}]}]},
         "must be unique"),
        ("silver.planes", {"dataset": "lakehouse/silver/flights", "columns": [{"name": "a"}]}, "expected lakehouse/silver/planes"),
        ("silver.planes", {"dataset": "lakehouse/silver/planes", "columns": [
            {"name": "seats", "checks": [{"invalid": {"valid_minimum": 1}}]}]},
         "'valid_minimum' was unexpected"),
        ("silver.planes", "dataset: lakehouse/silver/planes\ncolumns: [\n", "not valid YAML"),
    ],
)  # fmt: skip
def test_bad_contracts_are_refused_naming_file_and_problem(tmp_path: Path, table: str, doc: object, message: str) -> None:
    settings = write(tmp_path, table, doc)
    with pytest.raises(ContractError, match=message) as refused:
        contracts.load(settings, table)
    assert str(contracts.contract_path(settings, table)) in str(refused.value)


def test_a_table_without_a_contract_has_none(tmp_path: Path) -> None:
    settings = write(tmp_path, "silver.planes", {"dataset": "lakehouse/silver/planes", "columns": [{"name": "a"}]})
    assert contracts.load(settings, "silver.airlines") is None
