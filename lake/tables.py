"""The table registry: one module per table under `lake/silver` and `lake/gold`.

Each module declares `TABLE = Table(...)` with its inputs, keys, partitioning, description and
owner, and a pure transform. Run order and lineage are derived from the declared inputs. Bronze
tables are declared by source YAMLs (`lake/sources/*.yml`), not by code.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import ModuleType
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

Layer = Literal["bronze", "silver", "gold"]

# Layer-wide defaults, in one place.
DEFAULT_OWNER = "data-platform@example.org"
SEQUENCE_COLUMN = "_ingested_at"  # silver: on a key collision, the latest ingested row wins


@dataclass(frozen=True)
class Table:
    """A declared table.

    silver: `transform(batch, *lookups)` receives the new rows of the first input (after the
    `expect_or_drop` rules removed bad ones) and full snapshots of the other inputs; the result
    is MERGEd by `keys`, latest `_ingested_at` wins.
    gold: `transform(rows)` receives every input row whose `grain` value changed and returns
    the aggregates for those values, which replace the old ones atomically.
    """

    layer: Layer
    name: str
    description: str
    keys: tuple[str, ...]
    inputs: tuple[str, ...]
    transform: Callable[..., DataFrame]
    owner: str = DEFAULT_OWNER
    partition_by: tuple[str, ...] = ()
    grain: str | None = None
    # gold: the date column of the first input that a date-range backfill selects rows by.
    backfill_by: str | None = None
    # reason -> SQL predicate every input row must satisfy; failing rows go to quarantine. Only
    # guards on raw input values the transform relies on: checks on the table's own columns
    # live in its Soda contract, quality/<layer>/<name>.yml (docs/quality.md).
    expect_or_drop: Mapping[str, str] = field(default_factory=dict)
    # column -> description: the catalog writes them as Delta column comments (lake/catalog.py).
    columns: Mapping[str, str] = field(default_factory=dict)

    @property
    def fqn(self) -> str:
        return f"{self.layer}.{self.name}"

    def __post_init__(self) -> None:
        if self.layer == "gold" and not (self.grain and self.backfill_by):
            raise ValueError(f"{self.fqn}: a gold table declares `grain` (recomputed by) and `backfill_by`")
        if not self.keys:
            raise ValueError(f"{self.fqn}: declare the key columns")


def _discover(package: str) -> list[Table]:
    pkg: ModuleType = importlib.import_module(package)
    found = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{package}.{info.name}")
        table = getattr(module, "TABLE", None)
        if isinstance(table, Table):
            found.append(table)
    return found


@lru_cache(maxsize=1)
def registry() -> dict[str, Table]:
    """Every silver and gold table, by fully qualified name."""
    tables = _discover("lake.silver") + _discover("lake.gold")
    return {t.fqn: t for t in tables}


def get(fqn: str) -> Table:
    tables = registry()
    if fqn not in tables:
        raise KeyError(f"unknown table {fqn!r}; known: {', '.join(sorted(tables))}")
    return tables[fqn]


def run_order(tables: Mapping[str, Table] | None = None) -> list[Table]:
    """Tables in dependency order (inputs first), else layer by layer and by name, for a stable order."""
    tables = dict(tables or registry())
    done: set[str] = set()
    order: list[Table] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in done or name not in tables:
            return
        if name in visiting:
            raise ValueError(f"dependency cycle through {name}")
        visiting.add(name)
        for dep in tables[name].inputs:
            visit(dep)
        visiting.discard(name)
        done.add(name)
        order.append(tables[name])

    layer_rank = {"bronze": 0, "silver": 1, "gold": 2}
    for name in sorted(tables, key=lambda n: (layer_rank[tables[n].layer], n)):
        visit(name)
    return order
