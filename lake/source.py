"""Declarative sources: a YAML file says what to ingest into which bronze table, no code.

See docs/sources.md for the format. Loading validates everything that can be checked without
touching the data; an unknown key, a bad type name or a missing field fails naming it and the
file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lake.settings import Settings, is_uri, join, key_problems, resolve_path

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TYPE = re.compile(
    r"^(string|boolean|tinyint|smallint|int|integer|bigint|float|double|date|timestamp|timestamp_ntz|"
    r"binary|decimal\(\s*\d+\s*,\s*\d+\s*\))$",
    re.IGNORECASE,
)


class SourceError(ValueError):
    """A source spec problem, naming the file and the key."""


class SourceSpec(BaseModel):
    """One declared source. Field docs are the reference in docs/sources.md."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="source name, used by `lakehouse ingest NAME`")
    description: str = ""
    owner: str = "data-platform@example.org"
    format: Literal["csv", "json", "parquet"]
    path: str = Field(description="file or glob; relative paths are under the landing zone")
    target: str = Field(description="bronze table, `bronze.<name>`")
    keys: list[str] = Field(default_factory=list, description="natural key of a record")
    schema_: dict[str, str] | None = Field(default=None, alias="schema")
    options: dict[str, str | int | bool] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"{v!r} is not a valid name (lowercase letters, digits, _)")
        return v

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        layer, _, name = v.partition(".")
        if layer != "bronze" or not _NAME.match(name):
            raise ValueError(f"{v!r}: a source lands in a bronze table, `bronze.<name>`")
        return v

    @field_validator("schema_")
    @classmethod
    def _schema(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        for column, type_name in (v or {}).items():
            if not _TYPE.match(str(type_name)):
                raise ValueError(f"column {column!r}: unknown type {type_name!r}")
            if column.startswith("_"):
                raise ValueError(f"column {column!r}: names starting with _ are reserved for metadata")
        return v

    @property
    def table_name(self) -> str:
        return self.target.split(".", 1)[1]

    def glob(self, settings: Settings) -> str:
        if is_uri(self.path) or Path(self.path).is_absolute():
            return self.path
        return join(settings.landing_root, self.path)

    def ddl(self) -> str | None:
        if not self.schema_:
            return None
        return ", ".join(f"`{c}` {t}" for c, t in self.schema_.items())


def load_spec(path: Path | str) -> SourceSpec:
    path = Path(resolve_path(str(path)))
    if not path.is_file():
        raise SourceError(f"{path}: source spec not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SourceError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SourceError(f"{path}: a source spec is a mapping of keys")
    try:
        return SourceSpec.model_validate(data)
    except ValidationError as exc:
        raise SourceError(f"{path}: " + "; ".join(problem for _, problem in key_problems(exc))) from None


def declared_sources(settings: Settings) -> dict[str, SourceSpec]:
    """The sources declared in the repo's sources folder, by name."""
    specs: dict[str, SourceSpec] = {}
    for file in sorted(settings.sources_dir.glob("*.yml")):
        spec = load_spec(file)
        if spec.name in specs:
            raise SourceError(f"{file}: source name {spec.name!r} is declared twice")
        specs[spec.name] = spec
    return specs


def find_source(settings: Settings, name: str) -> SourceSpec:
    specs = declared_sources(settings)
    if name not in specs:
        raise SourceError(f"unknown source {name!r}; declared: {', '.join(sorted(specs)) or 'none'}")
    return specs[name]
