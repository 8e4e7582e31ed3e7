"""maintain: OPTIMIZE (compact the small files incremental runs leave) and VACUUM every table."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows.tasks import ParameterError, maintain_table, preflight
from lake import io
from lake.spark import LAYERS, get_spark

MIN_RETENTION_HOURS = 168  # Delta's own safety floor: readers and time travel of the last week


@flow(name="maintain", log_prints=True)
def maintain(tables: list[str] | None = None, vacuum_retention_hours: int = MIN_RETENTION_HOURS) -> list[dict[str, object]]:
    """Compact and vacuum; retention below a week is refused (it would break time travel and readers)."""
    if vacuum_retention_hours < MIN_RETENTION_HOURS:
        raise ParameterError(
            f"parameter `vacuum_retention_hours` ({vacuum_retention_hours}) is below {MIN_RETENTION_HOURS}"
        )
    settings = preflight()
    spark = get_spark(settings)
    names = tables or [f"{layer}.{name}" for layer in LAYERS for name in io.list_tables(spark, settings, layer)]
    results = [maintain_table(name, vacuum_retention_hours) for name in names]
    create_table_artifact(results, key="maintenance", description="OPTIMIZE / VACUUM per table")
    return results
