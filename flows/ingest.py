"""ingest: new files of every declared source (or the named ones) -> bronze."""

from __future__ import annotations

from prefect import flow

from flows.tasks import ParameterError, ingest_source, preflight, publish_artifacts, seed_if_empty
from lake.ingest import IngestResult
from lake.settings import get_settings
from lake.source import declared_sources


@flow(name="ingest", log_prints=True)
def ingest(sources: list[str] | None = None, seed_empty_landing: bool = True) -> list[IngestResult]:
    """Ingest new landing files into bronze; files already ingested are skipped."""
    declared = declared_sources(get_settings())
    unknown = sorted(set(sources or []) - set(declared))
    if unknown:
        raise ParameterError(f"parameter `sources`: unknown {', '.join(unknown)}; declared: {', '.join(declared)}")
    preflight()
    if seed_empty_landing:
        seed_if_empty()
    results = [ingest_source(name) for name in (sources or list(declared))]
    publish_artifacts(results, [], "ingest")
    return results
