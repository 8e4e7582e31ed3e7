"""stream: the scheduled micro-batch of the event stream (Kafka or the landing folder -> bronze -> silver).

The same checkpointed query `lakehouse stream` runs continuously, with the availableNow trigger:
it takes what arrived since the last run and stops. Run either this deployment or a long-lived
`lakehouse stream`, not both on the same checkpoint.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows.tasks import ParameterError, preflight, retried, starting
from lake import kafka, stream
from lake.settings import get_settings
from lake.spark import get_spark


@retried("stream-to-bronze")
def stream_to_bronze(source: Literal["landing", "kafka"]) -> stream.IngestSummary:
    settings = get_settings()
    spec = stream.load_stream(settings)
    starting(f"stream {source} -> {spec.target}")
    return stream.ingest_available(get_spark(settings), settings, spec, source)


@retried("stream-to-silver")
def stream_to_silver() -> str | None:
    """New bronze events -> silver; returns what it waited for (tables not built yet), else None."""
    settings = get_settings()
    spec = stream.load_stream(settings)
    starting(f"stream {spec.target} -> {spec.merge_into}")
    return stream.refine_available(get_spark(settings), settings, spec)


@flow(name="stream", log_prints=True)
def stream_flow(source: Literal["landing", "kafka"] | None = None, refine: bool = True) -> dict[str, object]:
    """New events -> bronze (exactly once), then -> silver; `source` defaults to `stream.source`."""
    settings = get_settings()
    spec = stream.load_stream(settings)  # a bad declaration fails here, naming the file and key
    chosen = source or settings.stream.source
    if chosen == "kafka" and not kafka.is_ready(settings, timeout_s=10):
        raise ParameterError(f"parameter `source`: Kafka at {kafka.bootstrap_servers(settings)} does not answer")
    preflight()
    summary = stream_to_bronze(chosen)
    waited = stream_to_silver() if refine else None
    result = {
        "source": chosen,
        "bronze": spec.target,
        "events": summary.rows,
        "quarantined": summary.quarantined,
        "batches": summary.batches,
        "bronze_version": summary.version,
        "silver": (waited or f"merged into {spec.merge_into}") if refine else "not asked",
        "silver_waiting": waited is not None,  # a fresh lake: silver's lookups are not built yet
    }
    create_table_artifact([result], key="stream", description="stream: events in, quarantined, silver")
    print(result)
    return result
