"""The one wrapper every pipeline step runs in, so each stage is observed the same way.

`step(...)` gives the step its log context (table, then Delta version), tags every Delta commit
it makes with userMetadata (run id, versions of the inputs read), emits OpenLineage START and
COMPLETE/FAIL events, records its figures in `lake.metrics` and pushes them when a Pushgateway
is configured. Stages that are not tables (training, scoring) can use it too: `inputs` and
`output` are any dataset names.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from lake import catalog, io, logs, metrics, openlineage
from lake.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("lake.step")
R = TypeVar("R")


def _outcome(result: object) -> tuple[int | None, int | None]:
    """(version written, rows written) of an IngestResult or StepResult."""
    from lake.ingest import IngestResult
    from lake.pipeline import StepResult

    if isinstance(result, IngestResult):
        return result.version, result.rows
    if isinstance(result, StepResult):
        written = None if result.table.startswith("gold.") else result.rows_in - result.rows_quarantined
        return result.version_after, written  # gold: grains recomputed, not rows
    return None, None


def _summary(result: object) -> str:
    from lake.ingest import IngestResult
    from lake.pipeline import StepResult

    if isinstance(result, IngestResult):
        return f"{result.files_new} new files, {result.rows} rows ({result.rescued} rescued), version {result.version}"
    if isinstance(result, StepResult):
        if result.skipped:
            return f"skipped: {result.skipped}"
        return (
            f"{result.rows_in} rows in, {result.rows_quarantined} quarantined, {result.grains_recomputed} grains "
            f"recomputed, version {result.version_before} -> {result.version_after}"
        )
    return "done"


def _with_version(result: R, version: int | None) -> R:
    from lake.ingest import IngestResult
    from lake.pipeline import StepResult

    if isinstance(result, IngestResult):
        return dataclasses.replace(result, version=version)
    if isinstance(result, StepResult):
        result.version_after = version
    return result


def step(
    spark: SparkSession,
    settings: Settings,
    output: str,
    inputs: Sequence[str],
    work: Callable[[], R],
    **commit_extra: str,
) -> R:
    """Run `work` (which writes `output` from `inputs`) observed; re-raises what it raises."""
    from lake.ingest import IngestResult
    from lake.pipeline import StepResult

    run_id = logs.run_id()
    step_run = str(uuid.uuid4())
    parent = (logs.flow() or "adhoc", run_id)
    tables = [name for name in inputs if "/" not in name and "://" not in name]
    described = [output, *([f"quarantine.{output.split('.', 1)[1]}"] if output.startswith("silver.") else [])]
    new = [name for name in described if not io.exists(spark, settings, name)]
    with logs.step(output):
        read = [openlineage.dataset(settings, name, io.version(spark, settings, name) if name in tables else None) for name in inputs]
        openlineage.emit(settings, openlineage.run_event(settings, "START", output, step_run, parent, read))
        started = time.monotonic()
        try:
            with io.commit_context(run_id, output, tables, step_run_id=step_run, **commit_extra):
                result = work()
                # A table this step created gets its declared descriptions (lake/catalog.py).
                if sum(catalog.apply(spark, settings, name) for name in new):
                    result = _with_version(result, io.version(spark, settings, output))
        except Exception as exc:
            seconds = time.monotonic() - started
            metrics.record_failure(output, seconds)
            log.exception("step failed after %.1fs", seconds)
            openlineage.emit(
                settings,
                openlineage.run_event(settings, "FAIL", output, step_run, parent, read, error=f"{type(exc).__name__}: {exc}"),
            )
            metrics.push(settings, only=[("table", output)])
            raise
        seconds = time.monotonic() - started
        version, rows = _outcome(result)
        logs.set_version(version)
        if isinstance(result, IngestResult):
            metrics.record_ingest(result, seconds, settings)
        elif isinstance(result, StepResult):
            metrics.record_step(result, seconds, settings)
        log.info("step finished in %.1fs: %s", seconds, _summary(result))
        written = [openlineage.dataset(settings, output, version, rows)]
        openlineage.emit(settings, openlineage.run_event(settings, "COMPLETE", output, step_run, parent, read, written))
        metrics.push(settings, only=[("table", output)])
    return result
