"""Running a table's contract with Soda on Spark, and the gate that refuses a failing write.

Soda (`soda-core` 4 with the `soda-sparkdf` data source) runs on this process's Spark session.
The data checked is a DataFrame: a silver batch about to be MERGEd, gold aggregates about to
replace old ones, or a whole table. It is shown to Soda as a global temporary view, and so are
the tables a contract's reference checks name, read from this lake (never the shared catalog).
Any Soda error (bad contract, missing column, failed query) raises: a check never passes by
not running.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from lake import io
from lake.settings import Settings, telemetry_off
from quality.contracts import DATA_SOURCE, CheckSpec, Contract, ContractError, for_soda, load

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

VIEW_SCHEMA = "global_temp"
_OUTCOMES = {"PASSED": "passed", "FAILED": "failed", "WARN": "warned", "NOT_EVALUATED": "not_evaluated"}


class QualityGateError(RuntimeError):
    """A `fail` check failed: the write was refused. Names the table, the checks and the counts."""

    def __init__(self, table: str, failed: list[CheckOutcome], what: str) -> None:
        self.table, self.failed = table, failed
        reasons = "; ".join(f"check {c.check!r} failed ({c.describe()})" for c in failed)
        super().__init__(f"quality gate: {table}: {reasons}; {what} refused, nothing written")


@dataclass
class CheckOutcome:
    """One check's result for one set of data: a row of `quality.results`."""

    table: str
    scope: str  # what was checked: "batch 3", "publish", "table"
    check: str
    check_type: str
    column: str | None
    action: str
    outcome: str  # passed | failed | warned | not_evaluated
    metric: float | None  # the value Soda compared with the threshold (e.g. the failing row count)
    detail: str  # JSON: Soda's diagnostics, or why the check was not evaluated

    @property
    def blocks(self) -> bool:
        return self.action == "fail" and self.outcome == "failed"

    def describe(self) -> str:
        if self.check_type in ("missing", "invalid", "duplicate", "failed_rows") and self.metric is not None:
            return f"{self.metric:g} failing rows"
        return f"measured {self.metric:g}" if self.metric is not None else self.outcome

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


def verify(
    spark: SparkSession, settings: Settings, table: str, data: DataFrame, scope: str
) -> list[CheckOutcome]:
    """Run the table's contract on `data` with Soda; [] when the table has no contract."""
    contract = load(settings, table)
    if contract is None:
        return []
    telemetry_off()  # Soda reads its switch when first imported
    tag = uuid.uuid4().hex[:12]
    views: list[str] = []

    def show(df: DataFrame, name: str) -> str:
        view = f"q_{tag}_{name}".replace(".", "_")
        df.createOrReplaceGlobalTempView(view)
        views.append(view)
        return f"{DATA_SOURCE}/{VIEW_SCHEMA}/{view}"

    try:
        dataset = show(data, table)
        refs: dict[str, str | None] = {
            ref: show(io.read(spark, settings, ref), ref) if io.exists(spark, settings, ref) else None
            for ref in sorted(contract.references())
        }
        outcomes = _run_soda(spark, contract, for_soda(contract, dataset, refs), scope)
    finally:
        for view in views:
            spark.catalog.dropGlobalTempView(view)
    skipped = [
        CheckOutcome(table, scope, c.name, c.type, c.column, c.action, "not_evaluated", None,
                     json.dumps({"reason": f"{c.reference} does not exist yet"}))
        for c in contract.checks if c.reference and refs.get(c.reference) is None
    ]  # fmt: skip
    return outcomes + skipped


def _run_soda(spark: SparkSession, contract: Contract, text: str, scope: str) -> list[CheckOutcome]:
    from soda_core.common.yaml import ContractYamlSource
    from soda_core.contracts.contract_verification import ContractVerificationSession
    from soda_sparkdf import SparkDataFrameDataSource

    source = SparkDataFrameDataSource.from_existing_session(session=spark, name=DATA_SOURCE)
    session = ContractVerificationSession.execute(
        contract_yaml_sources=[ContractYamlSource.from_str(text, file_path=str(contract.path))],
        data_source_impls=[source],
    )
    errors = session.get_errors_str()
    results = session.contract_verification_results
    if errors or not results:
        raise ContractError(f"{contract.path}: Soda could not verify the contract: {errors or 'no result'}")
    outcomes = []
    for r in results[0].check_results:
        spec = _match(contract, r.check.column_name, r.check.type, r.check.qualifier)
        # Errors raised above; NOT_EVALUATED without one means nothing to measure (e.g. the
        # freshness of an empty batch), recorded as such.
        outcome = _OUTCOMES.get(r.outcome.name, r.outcome.name.lower())
        metric = float(r.threshold_value) if isinstance(r.threshold_value, int | float) else None
        if spec.action == "warn" and outcome == "failed":
            outcome = "warned"
        diagnostics = {k: v for k, v in (r.diagnostic_metric_values or {}).items() if isinstance(v, int | float | str)}
        outcomes.append(
            CheckOutcome(contract.table, scope, spec.name, spec.type, spec.column, spec.action, outcome, metric,
                         json.dumps(diagnostics, sort_keys=True))
        )  # fmt: skip
    return outcomes


def _match(contract: Contract, column: str | None, kind: str, qualifier: str | None) -> CheckSpec:
    """The contract check a Soda result belongs to: Soda's identity is (column, type, qualifier)."""
    for c in contract.checks:
        if c.column == column and c.type == kind and c.config.get("qualifier") == qualifier:
            return c
    raise ContractError(f"{contract.path}: Soda reported a check this contract does not declare: {kind} on {column}")


def gate(table: str, outcomes: list[CheckOutcome], what: str) -> None:
    """Refuse the write when a `fail` check failed."""
    failed = [o for o in outcomes if o.blocks]
    if failed:
        raise QualityGateError(table, failed, what)
