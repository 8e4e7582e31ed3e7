"""OpenLineage run events (START, then COMPLETE or FAIL) for each step, written by hand to the spec.

https://openlineage.io/spec/2-0-2/OpenLineage.json: a RunEvent names the job (the table the step
writes), the run (a UUID, with a `parent` facet pointing at the flow run), the input datasets
with the Delta versions read and the output dataset with the version written. The sink is
`monitoring.openlineage_sink`: `file` appends one JSON line per event to
`<openlineage_dir>/<date>.jsonl` (default `<lake>/_openlineage`), `http` POSTs each event to
`<openlineage_url>/api/v1/lineage` (Marquez, or DataHub's OpenLineage endpoint), `off` drops them.
A sink that fails is logged, never fatal: lineage describes a run, it must not break it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from lake import io
from lake.settings import Settings, is_uri, join, resolve_path

log = logging.getLogger(__name__)

SPEC = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
PRODUCER = "https://github.com/lakehouse-platform/lakehouse"
_FACET = "https://openlineage.io/spec/facets/1-0-1"
EventType = Literal["START", "COMPLETE", "FAIL"]


def events_dir(settings: Settings) -> str:
    m = settings.monitoring
    return resolve_path(m.openlineage_dir) if m.openlineage_dir else join(settings.lake_root, "_openlineage")


def dataset(settings: Settings, name: str, version: int | None, rows: int | None = None) -> dict[str, Any]:
    """A dataset named by where it is stored (OpenLineage's naming), with the table name as a symlink."""
    location = io.path_of(settings, name) if "." in name and not is_uri(name) and "/" not in name else name
    if is_uri(location):
        parsed = urlparse(location)
        namespace, path = f"{parsed.scheme}://{parsed.netloc}", parsed.path
    else:
        namespace, path = "file", location
    facets: dict[str, Any] = {
        "symlinks": _facet(
            "SymlinksDatasetFacet",
            identifiers=[{"namespace": settings.monitoring.openlineage_namespace, "name": name, "type": "TABLE"}],
        )
    }
    if version is not None:
        facets["version"] = _facet("DatasetVersionDatasetFacet", datasetVersion=str(version))
    out: dict[str, Any] = {"namespace": namespace, "name": path, "facets": facets}
    if rows is not None:
        out["outputFacets"] = {"outputStatistics": _facet("OutputStatisticsOutputDatasetFacet", rowCount=rows)}
    return out


def _facet(kind: str, **fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": f"{_FACET}/{kind}.json", **fields}


def run_event(
    settings: Settings,
    event_type: EventType,
    job: str,
    run_id: str,
    parent: tuple[str, str] | None,
    inputs: Sequence[dict[str, Any]] = (),
    outputs: Sequence[dict[str, Any]] = (),
    error: str | None = None,
) -> dict[str, Any]:
    """One RunEvent; `parent` = (flow name, flow run id) of the run this step belongs to."""
    ns = settings.monitoring.openlineage_namespace
    run_facets: dict[str, Any] = {}
    if parent:
        run_facets["parent"] = _facet(
            "ParentRunFacet", run={"runId": _as_uuid(parent[1])}, job={"namespace": ns, "name": parent[0]}
        )
    if error:
        run_facets["errorMessage"] = _facet("ErrorMessageRunFacet", message=error, programmingLanguage="python")
    return {
        "eventType": event_type,
        "eventTime": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "run": {"runId": run_id, "facets": run_facets},
        "job": {"namespace": ns, "name": job, "facets": {}},
        "inputs": list(inputs),
        "outputs": list(outputs),
        "producer": PRODUCER,
        "schemaURL": SPEC,
    }


def _as_uuid(value: str) -> str:
    """OpenLineage run ids are UUIDs; a run id that is not one is mapped to one, stably."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, value))


def emit(settings: Settings, event: Mapping[str, Any]) -> None:
    m = settings.monitoring
    line = json.dumps(event, sort_keys=True)
    try:
        if m.openlineage_sink == "file":
            folder = events_dir(settings)
            if is_uri(folder):
                log.warning("openlineage: the file sink needs a local monitoring.openlineage_dir, not %s", folder)
                return
            path = Path(folder) / f"{event['eventTime'][:10]}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
        elif m.openlineage_sink == "http":
            if not m.openlineage_url:
                raise ValueError("monitoring.openlineage_sink is http but monitoring.openlineage_url is not set")
            request = urllib.request.Request(
                m.openlineage_url.rstrip("/") + "/api/v1/lineage",
                data=line.encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=5):
                pass
    except OSError as exc:
        log.warning("openlineage event for %s not sent: %s", event["job"]["name"], exc)


def read_events(settings: Settings) -> list[dict[str, Any]]:
    """Every event the file sink holds, oldest first (for tests and `lakehouse lineage --runs`)."""
    folder = Path(events_dir(settings))
    if not folder.is_dir():
        return []
    return [json.loads(line) for f in sorted(folder.glob("*.jsonl")) for line in f.read_text().splitlines() if line]
