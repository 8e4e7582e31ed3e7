"""Lineage derived from the declarations, never written by hand.

The graph is built from what the code already declares, from the sources to the model and the
endpoints: sources (`lake/sources/*.yml`) feed their bronze tables, the event stream
(`lake/streams/*.yml`) feeds its bronze table and the silver table it merges into, silver and gold
tables name their inputs (`lake/tables.py`), the feature tables name theirs
(`ray_jobs.features.FEATURE_TABLES`), the model is trained from the tables training pins
(`ray_jobs.train.PINNED_TABLES`), scoring writes its predictions table from the model and the
feature tables (`ray_jobs.score.TABLE`), and each Ray Serve application in the Serve config
(`serve.config_file`) is an endpoint: the data app serves the gold tables, the model app the
model. Those modules are imported for their constants only (they start nothing at import); the
Serve apps are read from the YAML and their modules' docstrings, never imported (that would
import Ray Serve). A stage may add more with `ASSETS = [Asset(...)]` in a `lineage` module of its
package (`features/lineage.py`, `ray_jobs/lineage.py`, `serve/lineage.py`), discovered when
present. `docs/lineage.md` is generated from this graph (`lakehouse lineage --write-docs`; a test
checks it is current). Per version, `trace` follows the userMetadata every Delta commit carries
(`lake.io.commit_context`) from a gold version back to the exact bronze versions it was built from.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import yaml

from lake.settings import REPO_ROOT, Settings, resolve_path
from lake.source import declared_sources
from lake.tables import registry

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

Kind = Literal["source", "bronze", "silver", "gold", "feature_view", "model", "endpoint"]
# Packages whose `lineage` module may declare more assets (read, never imported for anything else).
EXTENSION_PACKAGES = ("features", "ray_jobs", "serve")
DOC_PATH = REPO_ROOT / "docs" / "lineage.md"
MODEL = "model.flight_delay"


@dataclass(frozen=True)
class Asset:
    """A node of the lineage graph: what it is, what it is made from, who owns it."""

    name: str
    kind: Kind
    inputs: tuple[str, ...] = ()
    description: str = ""
    owner: str = ""


def _stream_spec(settings: Settings) -> Any:
    """The declared event stream (`stream.declaration`, lake/stream.py), or None when there is none."""
    from lake.stream import StreamError, load_stream

    try:
        return load_stream(settings)
    except StreamError as exc:
        if "not found" in str(exc):
            return None
        raise


def _stream_assets(spec: Any) -> list[Asset]:
    if spec is None:
        return []
    where = f"Kafka topic `{spec.topic}` or landing folder `{spec.landing_path}`"
    return [
        Asset(f"source.{spec.name}", "source", (), f"events: {where}", spec.owner),
        Asset(spec.target, "bronze", (f"source.{spec.name}",), spec.description, spec.owner),
    ]


def _module(name: str) -> ModuleType | None:
    """A later stage's module, when that stage exists in this fork (imported for its constants)."""
    package = name.split(".", 1)[0]
    if importlib.util.find_spec(package) is None or importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)


def _feature_tables() -> list[Asset]:
    """The feature tables `ray_jobs.features` declares (`FEATURE_TABLES`)."""
    module = _module("ray_jobs.features")
    return [
        Asset(ft.table, "feature_view", tuple(ft.inputs), ft.description, ft.owner)
        for ft in getattr(module, "FEATURE_TABLES", ())
    ]


def _model_assets() -> list[Asset]:
    """The model, made from what training pins, and the predictions scoring writes with it."""
    train, score, features = _module("ray_jobs.train"), _module("ray_jobs.score"), _module("ray_jobs.features")
    if train is None or score is None or features is None:
        return []
    from ray_jobs.registry import TABLE as REGISTRY_TABLE

    model = Asset(
        MODEL,
        "model",
        tuple(train.PINNED_TABLES),
        f"The flight-delay model, trained by `{train.__name__}` on the tables it pins; every version with its "
        f"test metrics and pinned input versions is in `{REGISTRY_TABLE}`.",
        features.OWNER,
    )
    # Scoring joins every feature table of the flights' day (ray_jobs/score.py), then predicts.
    scored = (MODEL, *(ft.table for ft in features.FEATURE_TABLES))
    return [
        model,
        Asset(
            score.TABLE, "gold", scored, f"Written by `{score.__name__}`. {_first_line(score.__doc__)}", features.OWNER
        ),
    ]


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc and doc.strip() else ""


def _endpoints(settings: Settings, declared: set[str]) -> list[Asset]:
    """One endpoint per application in the Serve config, reading what its app serves."""
    path = Path(resolve_path(settings.serve.config_file))
    if not path.is_file():
        return []
    gold = tuple(t.fqn for t in registry().values() if t.layer == "gold")  # what the data app serves (its catalog)
    served = {"serve.data_app": gold, "serve.model_app": (MODEL,) if MODEL in declared else ()}
    out = []
    for app in (yaml.safe_load(path.read_text()) or {}).get("applications", []):
        module = str(app["import_path"]).split(":", 1)[0]
        source = REPO_ROOT / (module.replace(".", "/") + ".py")
        doc = _first_line(ast.get_docstring(ast.parse(source.read_text()))) if source.is_file() else ""
        where = f"Ray Serve app `{app['name']}` at `{app.get('route_prefix', '/')}` ({app['import_path']})"
        out.append(
            Asset(f"endpoint.{app['name']}", "endpoint", served.get(module, ()), f"{where}: {doc}" if doc else where)
        )
    return out


def _declared_extensions(settings: Settings) -> list[Asset]:
    """The later stages: feature tables, the model and its predictions, the endpoints, then `lineage` modules."""
    found: list[Asset] = [*_feature_tables(), *_model_assets()]
    found.extend(_endpoints(settings, {a.name for a in found}))
    for package in EXTENSION_PACKAGES:
        module = _module(f"{package}.lineage")
        if module is None:
            continue
        assets = getattr(module, "ASSETS", ())
        bad = [a for a in assets if not isinstance(a, Asset)]
        if bad:
            raise TypeError(f"{package}/lineage.py: ASSETS holds {bad[0]!r}, not a lake.lineage.Asset")
        found.extend(assets)
    return found


def graph(settings: Settings, extra: Iterable[Asset] = ()) -> dict[str, Asset]:
    """Every asset by name: sources, bronze, silver, gold, the later stages, then `extra` (tests)."""
    assets: list[Asset] = []
    for spec in declared_sources(settings).values():
        assets.append(Asset(f"source.{spec.name}", "source", (), f"{spec.format} files `{spec.path}`", spec.owner))
        assets.append(Asset(spec.target, "bronze", (f"source.{spec.name}",), spec.description, spec.owner))
    stream = _stream_spec(settings)
    fed_by = {stream.merge_into: stream.target} if stream is not None and stream.merge_into else {}
    for table in registry().values():
        inputs = table.inputs + ((fed_by[table.fqn],) if table.fqn in fed_by else ())
        assets.append(Asset(table.fqn, table.layer, inputs, table.description, table.owner))
    assets.extend(_stream_assets(stream))
    assets.extend(_declared_extensions(settings))
    assets.extend(extra)
    nodes: dict[str, Asset] = {}
    for asset in assets:
        if asset.name in nodes:
            raise ValueError(f"lineage: {asset.name} is declared twice")
        nodes[asset.name] = asset
    for asset in nodes.values():
        missing = [i for i in asset.inputs if i not in nodes]
        if missing:
            raise ValueError(f"lineage: {asset.name} reads {', '.join(missing)}, which nothing declares")
    return nodes


def readers(nodes: Mapping[str, Asset]) -> dict[str, tuple[str, ...]]:
    """Asset -> the assets that read it (the reverse of `inputs`)."""
    out: dict[str, list[str]] = {n: [] for n in nodes}
    for asset in nodes.values():
        for i in asset.inputs:
            out[i].append(asset.name)
    return {n: tuple(sorted(r)) for n, r in out.items()}


def upstream(nodes: Mapping[str, Asset], name: str) -> list[tuple[int, str]]:
    """(depth, asset) for everything `name` is built from, as a depth-first tree."""
    return _tree(nodes, name, lambda n: tuple(sorted(nodes[n].inputs)))


def downstream(nodes: Mapping[str, Asset], name: str) -> list[tuple[int, str]]:
    """(depth, asset) for everything built from `name`, as a depth-first tree."""
    reverse = readers(nodes)
    return _tree(nodes, name, lambda n: reverse[n])


def _tree(nodes: Mapping[str, Asset], start: str, next_of: Callable[[str], tuple[str, ...]]) -> list[tuple[int, str]]:
    if start not in nodes:
        raise KeyError(f"unknown asset {start!r}; known: {', '.join(sorted(nodes))}")
    out: list[tuple[int, str]] = []

    def visit(node: str, depth: int) -> None:
        for nxt in next_of(node):
            out.append((depth, nxt))
            visit(nxt, depth + 1)

    visit(start, 1)
    return out


def _node_id(name: str) -> str:
    return name.replace(".", "_").replace("-", "_")


_SHAPES = {
    "source": ('[/"', '"/]'),
    "bronze": ('[("', '")]'),
    "silver": ('[("', '")]'),
    "gold": ('[("', '")]'),
    "feature_view": ('[["', '"]]'),
    "model": ('{{"', '"}}'),
    "endpoint": ('(["', '"])'),
}


def mermaid(nodes: Mapping[str, Asset]) -> str:
    """A Mermaid flowchart: one subgraph per kind, edges from inputs to what reads them."""
    lines = ["flowchart LR"]
    for kind in _SHAPES:
        members = sorted(n for n, a in nodes.items() if a.kind == kind)
        if not members:
            continue
        lines.append(f"  subgraph {kind}")
        left, right = _SHAPES[kind]
        lines.extend(f"    {_node_id(n)}{left}{n}{right}" for n in members)
        lines.append("  end")
    for name in sorted(nodes):
        lines.extend(f"  {_node_id(i)} --> {_node_id(name)}" for i in nodes[name].inputs)
    return "\n".join(lines)


def render_doc(nodes: Mapping[str, Asset]) -> str:
    """docs/lineage.md: the diagram and a table of every asset (generated; do not edit)."""
    rows = [
        f"| `{a.name}` | {a.kind} | {', '.join(f'`{i}`' for i in a.inputs) or '-'} | {a.owner or '-'} | "
        f"{a.description.replace('|', '/') or '-'} |"
        for a in sorted(nodes.values(), key=lambda a: (list(_SHAPES).index(a.kind), a.name))
    ]
    missing = [k for k in ("feature_view", "model", "endpoint") if not any(a.kind == k for a in nodes.values())]
    note = (
        f"\nNot found: {', '.join(missing)}. They come from `ray_jobs/features.py` (FEATURE_TABLES), "
        "`ray_jobs/train.py` (PINNED_TABLES) and the Serve config (`serve.config_file`); a stage may add assets "
        "with `ASSETS = [Asset(...)]` in `features/lineage.py`, `ray_jobs/lineage.py` or `serve/lineage.py`.\n"
        if missing
        else ""
    )
    return "\n".join(
        [
            "# Lineage",
            "",
            "<!-- Generated by `lakehouse lineage --write-docs` from the declarations (lake/lineage.py); do not edit. "
            "tests/unit/test_lineage.py fails when it is out of date. -->",
            "",
            "From the declared sources to the model and the endpoints: sources and the event stream feed bronze,",
            "silver and gold tables name their inputs, the feature tables theirs (`ray_jobs/features.py`), the model",
            "is trained from the tables training pins (`ray_jobs/train.py`), scoring writes its predictions from the",
            "model, and each Ray Serve application in `serve/config.yaml` is an endpoint (the data app serves the",
            "gold tables, the model app the model). Per version, every Delta commit records the run id and the",
            "versions of the inputs it read (`userMetadata`): `lakehouse lineage TABLE --at VERSION` follows them",
            "down to the exact bronze versions; each model version in `ml.models` records the versions it pinned.",
            "",
            "```mermaid",
            mermaid(nodes),
            "```",
            note,
            "| asset | kind | inputs | owner | description |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


def write_doc(settings: Settings, path: Path = DOC_PATH) -> Path:
    path.write_text(render_doc(graph(settings)))
    return path


@dataclass(frozen=True)
class Traced:
    """One Delta version in a chain of commits, with the run that wrote it."""

    depth: int
    table: str
    version: int
    run_id: str | None
    operation: str


def trace(spark: SparkSession, settings: Settings, table: str, version: int | None = None) -> list[Traced]:
    """Follow userMetadata from `table` at `version` (default latest) down to the versions it read."""
    from delta.tables import DeltaTable

    from lake import io

    out: list[Traced] = []

    def visit(name: str, at: int | None, depth: int) -> None:
        if not io.exists(spark, settings, name):
            return
        history = DeltaTable.forPath(spark, io.path_of(settings, name)).history()
        if at is not None:
            history = history.where(f"version = {int(at)}")
        row = history.select("version", "operation", "userMetadata").first()
        if row is None:
            raise KeyError(f"{name} has no version {at}")
        meta = io.parse_user_metadata(row["userMetadata"])
        out.append(Traced(depth, name, int(row["version"]), meta.get("run_id"), str(row["operation"])))
        for parent, parent_version in sorted((meta.get("inputs") or {}).items()):
            if parent_version is not None:
                visit(parent, int(parent_version), depth + 1)

    visit(table, version, 0)
    return out
