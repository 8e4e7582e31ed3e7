"""Soda contracts, one per silver and gold table: `quality/<layer>/<table>.yml`.

A contract is a plain Soda 4 contract (`dataset: lakehouse/<layer>/<table>`, `columns:`,
`checks:`). Each check may carry `attributes: {action: warn | drop | fail}` (default `fail`):

- `drop`: a row-level check (`missing`, or `invalid` without reference data); rows that fail it
  go to `quarantine.<table>`. The pipeline needs the failing
  rows, which Soda only counts, so these checks are also compiled here into Spark predicates
  with Soda's own semantics (NULL is missing, never invalid; `filter` narrows the check).
- `warn`: the row stays; Soda's failing count is recorded.
- `fail`: a failing check refuses the whole write (silver batch or gold publish). Soda's schema
  gives `failed_rows` no `attributes`, so those checks always `fail`.

Soda itself evaluates every check (`quality.runner`); this module only reads the YAML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from lake.settings import Settings, resolve_path

ACTIONS = ("warn", "drop", "fail")
DEFAULT_ACTION = "fail"
DATA_SOURCE = "lakehouse"  # the Soda data source name every contract's dataset starts with
ROW_CHECKS = ("missing", "invalid")
# Keys of a row-level check that the routing predicate understands; others refuse `drop`.
_ROUTABLE_KEYS = {
    "name", "qualifier", "attributes", "threshold", "filter", "missing_values", "missing_format",
    "invalid_values", "invalid_format", "valid_values", "valid_format", "valid_min", "valid_max",
    "valid_length", "valid_min_length", "valid_max_length",
}  # fmt: skip
_COLUMN_CONFIG = {
    "missing_values", "missing_format", "invalid_values", "invalid_format", "valid_values", "valid_format",
    "valid_min", "valid_max", "valid_length", "valid_min_length", "valid_max_length", "valid_reference_data",
}  # fmt: skip
_DATASET = re.compile(r"^lakehouse/(?P<layer>[a-z_]+)/(?P<name>[A-Za-z0-9_]+)$")


class ContractError(ValueError):
    """A contract that cannot be used: always names the file and the check."""


@dataclass(frozen=True)
class CheckSpec:
    """One check of a contract, as written."""

    type: str
    column: str | None
    name: str  # what results and quarantine call it
    action: str
    config: dict[str, Any]

    @property
    def reference(self) -> str | None:
        """`layer.table` this check's `valid_reference_data` points at, if any."""
        ref = self.config.get("valid_reference_data")
        return table_of(ref["dataset"]) if isinstance(ref, dict) and "dataset" in ref else None


@dataclass(frozen=True)
class Contract:
    table: str  # layer.name
    path: Path
    doc: dict[str, Any]
    checks: tuple[CheckSpec, ...]

    def rules(self, action: str) -> dict[str, str]:
        """reason -> Spark SQL predicate a row must satisfy, for this action's row-level checks."""
        return {c.name: _passes(c, self.path) for c in self.checks if c.action == action and c.type in ROW_CHECKS}

    def references(self) -> set[str]:
        return {ref for c in self.checks if (ref := c.reference)}


def contract_path(settings: Settings, table: str) -> Path:
    layer, name = table.split(".", 1)
    return Path(resolve_path(settings.quality.contracts_dir)) / layer / f"{name}.yml"


def table_of(dataset: str) -> str:
    """`lakehouse/silver/flights` -> `silver.flights`."""
    m = _DATASET.match(str(dataset))
    if not m:
        raise ContractError(f"dataset {dataset!r}: expected {DATA_SOURCE}/<layer>/<table>")
    return f"{m['layer']}.{m['name']}"


def load(settings: Settings, table: str) -> Contract | None:
    """The table's contract, or None when it has none; a malformed one raises ContractError."""
    path = contract_path(settings, table)
    return _load(path, path.stat().st_mtime_ns, table) if path.is_file() else None


@lru_cache(maxsize=64)
def _load(path: Path, _mtime: int, table: str) -> Contract:
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ContractError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or "dataset" not in doc:
        raise ContractError(f"{path}: a contract is a mapping with a `dataset` key")
    if problems := schema_errors(doc):
        raise ContractError(f"{path}: not a valid Soda contract:\n  " + "\n  ".join(problems))
    try:
        declared = table_of(doc["dataset"])
    except ContractError as exc:
        raise ContractError(f"{path}: {exc}") from None
    if declared != table:
        raise ContractError(f"{path}: dataset is {doc['dataset']!r}, expected {DATA_SOURCE}/{table.replace('.', '/')}")
    checks = [_check(path, item, None, {}) for item in doc.get("checks") or []]
    for column in doc.get("columns") or []:
        if not isinstance(column, dict) or "name" not in column:
            raise ContractError(f"{path}: every entry of `columns` needs a `name`")
        shared = {k: v for k, v in column.items() if k in _COLUMN_CONFIG}
        checks += [_check(path, item, column["name"], shared) for item in column.get("checks") or []]
    names = [c.name for c in checks]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise ContractError(f"{path}: check names must be unique (they are quarantine reasons): {dupes}")
    contract = Contract(table, path, doc, tuple(checks))
    for c in contract.checks:
        if c.action == "drop":
            _passes(c, path)  # refuse an unroutable `drop` when the contract is read, not mid-run
    return contract


def schema_errors(doc: dict[str, Any]) -> list[str]:
    """Problems with `doc` against the JSON schema Soda ships for contracts (Soda itself ignores
    unknown keys, so a typo such as `valid_minimum` would silently check nothing)."""
    from jsonschema.exceptions import best_match

    out = []
    for error in sorted(_validator().iter_errors(doc), key=lambda e: e.json_path):
        deepest = best_match(error.context) if error.context else None  # which anyOf branch, and why
        out.append(f"{error.json_path}: {(deepest or error).message}")
    return out


@lru_cache(maxsize=1)
def _validator() -> Any:
    import json
    from importlib.resources import files

    from jsonschema.validators import Draft7Validator

    schema = files("soda_core.contracts").joinpath("soda_data_contract_json_schema_1_0_0.json").read_text()
    return Draft7Validator(json.loads(schema))


def _check(path: Path, item: Any, column: str | None, shared: dict[str, Any]) -> CheckSpec:
    if not isinstance(item, dict) or len(item) != 1:
        raise ContractError(f"{path}: a check is a one-key mapping like `- missing:` (got {item!r})")
    (kind, config), = item.items()
    config = {**shared, **(config or {})}
    where = f"{path}: check `{kind}`" + (f" on column `{column}`" if column else "")
    action = (config.get("attributes") or {}).get("action", DEFAULT_ACTION)
    if action not in ACTIONS:
        raise ContractError(f"{where}: attributes.action must be one of {', '.join(ACTIONS)} (got {action!r})")
    if action == "drop" and path.parent.name != "silver":
        raise ContractError(f"{where}: `drop` routes rows to quarantine, only silver contracts have it")
    name = config.get("name") or " ".join(p for p in (column, kind, config.get("qualifier")) if p)
    return CheckSpec(type=kind, column=column, name=str(name), action=action, config=config)


def _passes(check: CheckSpec, path: Path) -> str:
    """Spark SQL that is TRUE for a row that passes `check` (NULL counts as passing)."""
    where = f"{path}: check {check.name!r}"
    if check.type not in ROW_CHECKS:
        raise ContractError(f"{where}: `drop` needs a row-level check ({', '.join(ROW_CHECKS)}), not {check.type}")
    if unknown := sorted(set(check.config) - _ROUTABLE_KEYS):
        raise ContractError(f"{where}: `drop` cannot route rows for {unknown}; use warn or fail")
    cfg, col = check.config, f"`{check.column}`"
    missing = " OR ".join(
        [f"{col} IS NULL"]
        + ([f"{col} IN ({_literals(cfg['missing_values'])})"] if cfg.get("missing_values") else [])
        + ([f"{col} RLIKE {_literal(cfg['missing_format']['regex'])}"] if cfg.get("missing_format") else [])
    )
    if check.type == "missing":
        failed = f"({missing})"
    else:
        invalid = _invalid(col, cfg)
        if not invalid:
            raise ContractError(f"{where}: an invalid check needs a valid_* or invalid_* setting")
        failed = f"(NOT ({missing}) AND ({' OR '.join(invalid)}))"
    if cfg.get("filter"):
        failed = f"(({cfg['filter']}) AND {failed})"
    return f"NOT coalesce({failed}, FALSE)"


def _invalid(col: str, cfg: dict[str, Any]) -> list[str]:
    out = []
    if cfg.get("valid_values") is not None:
        out.append(f"{col} NOT IN ({_literals(cfg['valid_values'])})")
    if cfg.get("invalid_values") is not None:
        out.append(f"{col} IN ({_literals(cfg['invalid_values'])})")
    if cfg.get("valid_format"):
        out.append(f"NOT ({col} RLIKE {_literal(cfg['valid_format']['regex'])})")
    if cfg.get("invalid_format"):
        out.append(f"{col} RLIKE {_literal(cfg['invalid_format']['regex'])}")
    if cfg.get("valid_min") is not None:
        out.append(f"{col} < {float(cfg['valid_min'])!r}")
    if cfg.get("valid_max") is not None:
        out.append(f"{col} > {float(cfg['valid_max'])!r}")
    if cfg.get("valid_length") is not None:
        out.append(f"length({col}) <> {int(cfg['valid_length'])}")
    if cfg.get("valid_min_length") is not None:
        out.append(f"length({col}) < {int(cfg['valid_min_length'])}")
    if cfg.get("valid_max_length") is not None:
        out.append(f"length({col}) > {int(cfg['valid_max_length'])}")
    return out


def _literal(value: Any) -> str:
    from lake.io import _sql_literal

    return _sql_literal(value)


def _literals(values: list[Any]) -> str:
    return ", ".join(_literal(v) for v in values)


def for_soda(contract: Contract, dataset: str, references: dict[str, str | None]) -> str:
    """The contract's YAML for Soda with the dataset (and referenced tables) pointed at views.

    `references` maps `layer.table` to a `lakehouse/<schema>/<view>` identifier, or to None when
    that table does not exist yet: checks against it are left out (the runner reports them).
    """
    import copy

    doc = copy.deepcopy(contract.doc)
    doc["dataset"] = dataset

    def keep(item: dict[str, Any]) -> bool:
        (config,) = item.values()
        ref = (config or {}).get("valid_reference_data")
        if not isinstance(ref, dict):
            return True
        target = references.get(table_of(ref["dataset"]))
        if target is None:
            return False
        ref["dataset"] = target
        return True

    if doc.get("checks"):
        doc["checks"] = [c for c in doc["checks"] if keep(c)]
        if not doc["checks"]:
            del doc["checks"]
    for column in doc.get("columns") or []:
        ref = column.get("valid_reference_data")
        if isinstance(ref, dict):
            raise ContractError(f"{contract.path}: put valid_reference_data on the check, not the column")
        if column.get("checks"):
            column["checks"] = [c for c in column["checks"] if keep(c)]
            if not column["checks"]:
                del column["checks"]
    return yaml.safe_dump(doc, sort_keys=False)
