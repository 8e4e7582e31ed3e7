"""Files -> bronze on a real Spark + Delta, on a scratch lake.

Every row lands, bad values and malformed records included (rescued, never dropped); files
already ingested are skipped, so re-running adds nothing. Table names are unique per test so
nothing here clashes with other tests sharing the session catalog.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lake import io
from lake.ingest import ingest
from lake.seed import seed
from lake.settings import Settings
from lake.source import SourceError, SourceSpec, declared_sources, load_spec

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.spark

SCHEMA = {"id": "int", "name": "string", "amount": "double", "day": "date", "ts": "timestamp"}

CSV_GOOD = """id,name,amount,day,ts
1,alpha,1.5,2024-01-01,2024-01-01 10:00:00
2,beta,2.5,2024-01-02,2024-01-02 11:00:00
5,,,,
"""
# row "three": a non-numeric int; row 7: a bad double; row 4: one field too many.
CSV_BAD = """id,name,amount,day,ts
three,gamma,3.0,2024-01-03,2024-01-03 12:00:00
7,eta,x7,2024-01-07,2024-01-07 07:00:00
4,delta,4.0,2024-01-04,2024-01-04 13:00:00,extra
6,zeta,6.0,2024-01-06,2024-01-06 06:00:00
"""
JSON_LINES = """{"id": 1, "name": "alpha", "amount": 1.5, "day": "2024-01-01", "ts": "2024-01-01T10:00:00Z"}
{"id": "abc", "name": "beta", "amount": 2.5, "day": "2024-01-02", "ts": "2024-01-02T11:00:00Z"}
{"id": 3, "name": "gamma", "amount":
{"id": 4, "name": null, "amount": null, "day": "not a day", "ts": null}
"""


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def write_spec(tmp_path: Path, **fields: Any) -> SourceSpec:
    """A spec declared outside the repo, loaded from YAML as `lakehouse ingest --spec` does."""
    import yaml

    path = tmp_path / "specs" / f"{fields['name']}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(fields, sort_keys=False))
    return load_spec(path)


def land(settings: Settings, relative: str, text: str) -> Path:
    path = Path(settings.landing_root) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def rows_by(spark: SparkSession, settings: Settings, table: str, column: str = "name") -> dict[Any, dict[str, Any]]:
    return {r[column]: r.asDict() for r in io.read(spark, settings, table).collect()}


def test_csv_every_row_lands_and_bad_values_are_rescued(
    spark: SparkSession, scratch_lake: Settings, tmp_path: Path
) -> None:
    name = unique("t_csv")
    spec = write_spec(
        tmp_path, name=name, format="csv", path=f"{name}/*.csv", target=f"bronze.{name}", keys=["id"], schema=SCHEMA
    )
    good = land(scratch_lake, f"{name}/part_1.csv", CSV_GOOD)
    bad = land(scratch_lake, f"{name}/part_2.csv", CSV_BAD)
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=5)

    r = ingest(spark, scratch_lake, spec)

    assert (r.source, r.table, r.files_seen, r.files_new, r.rows, r.rescued) == (name, f"bronze.{name}", 2, 2, 7, 3)
    assert r.version == 0 and r.batch_id
    df = io.read(spark, scratch_lake, spec.target)
    assert df.columns == [*SCHEMA, "_rescued_data", "_source_file", "_ingested_at", "_batch_id"]
    assert {f.name: f.dataType.simpleString() for f in df.schema.fields} == {
        **SCHEMA,
        "_rescued_data": "string",
        "_source_file": "string",
        "_ingested_at": "timestamp",
        "_batch_id": "string",
    }
    rows = rows_by(spark, scratch_lake, spec.target)
    assert set(rows) == {"alpha", "beta", None, "gamma", "eta", "delta", "zeta"}

    alpha = rows["alpha"]
    assert (alpha["id"], alpha["amount"], alpha["day"], alpha["ts"]) == (
        1,
        1.5,
        dt.date(2024, 1, 1),
        dt.datetime(2024, 1, 1, 10, 0),
    )
    assert alpha["_rescued_data"] is None
    assert rows["zeta"]["_rescued_data"] is None
    empty = rows[None]  # "5,,,,": empty values are nulls, not parse failures
    assert (empty["id"], empty["amount"], empty["day"], empty["_rescued_data"]) == (5, None, None, None)

    gamma = rows["gamma"]
    assert gamma["id"] is None and gamma["amount"] == 3.0  # only the bad value is nulled
    assert json.loads(gamma["_rescued_data"]) == {"_error": "id: not a valid int", "id": "three"}
    assert json.loads(rows["eta"]["_rescued_data"]) == {"_error": "amount: not a valid double", "amount": "x7"}
    assert rows["eta"]["id"] == 7 and rows["eta"]["amount"] is None

    delta = json.loads(rows["delta"]["_rescued_data"])
    assert delta["_error"] == "malformed record"
    assert delta["_raw"] == "4,delta,4.0,2024-01-04,2024-01-04 13:00:00,extra"

    # Metadata: one batch, one commit, each row knows its file.
    for row in rows.values():
        assert row["_batch_id"] == r.batch_id
        assert row["_ingested_at"] >= before
    assert rows["alpha"]["_source_file"] == good.as_uri().replace("file:///", "file:/")
    assert {row["_source_file"].rsplit("/", 1)[1] for row in rows.values()} == {"part_1.csv", "part_2.csv"}
    assert rows["gamma"]["_source_file"].endswith("/part_2.csv") and bad.exists()


def test_json_malformed_lines_and_bad_values_are_rescued(
    spark: SparkSession, scratch_lake: Settings, tmp_path: Path
) -> None:
    name = unique("t_json")
    spec = write_spec(tmp_path, name=name, format="json", path=f"{name}/*.json", target=f"bronze.{name}", schema=SCHEMA)
    land(scratch_lake, f"{name}/day_1.json", JSON_LINES)

    r = ingest(spark, scratch_lake, spec)

    assert (r.files_new, r.rows, r.rescued) == (1, 4, 3)
    rows = io.read(spark, scratch_lake, spec.target).orderBy("_rescued_data").collect()
    clean = [row for row in rows if row["_rescued_data"] is None]
    assert len(clean) == 1
    assert (clean[0]["id"], clean[0]["name"], clean[0]["amount"], clean[0]["ts"]) == (
        1,
        "alpha",
        1.5,
        dt.datetime(2024, 1, 1, 10, 0),
    )
    rescued = sorted((json.loads(row["_rescued_data"]) for row in rows if row["_rescued_data"]), key=str)
    assert rescued == sorted(
        [
            {"_error": "id: not a valid int", "id": "abc"},
            {"_error": "malformed record", "_raw": '{"id": 3, "name": "gamma", "amount":'},
            # An explicit JSON null is a null; "not a day" is a bad date.
            {"_error": "day: not a valid date", "day": "not a day"},
        ],
        key=str,
    )
    by_id = {row["id"]: row for row in rows}
    assert by_id[4]["day"] is None and by_id[4]["name"] is None
    assert all(row["_batch_id"] == r.batch_id and row["_source_file"].endswith("/day_1.json") for row in rows)


def test_reingest_adds_nothing_and_new_files_add_only_their_rows(
    spark: SparkSession, scratch_lake: Settings, tmp_path: Path
) -> None:
    name = unique("t_again")
    spec = write_spec(tmp_path, name=name, format="csv", path=f"{name}/*.csv", target=f"bronze.{name}", schema=SCHEMA)
    land(scratch_lake, f"{name}/a.csv", CSV_GOOD)
    first = ingest(spark, scratch_lake, spec)
    assert (first.files_new, first.rows, first.version) == (1, 3, 0)

    again = ingest(spark, scratch_lake, spec)
    assert (again.files_seen, again.files_new, again.rows, again.rescued, again.batch_id) == (1, 0, 0, 0, None)
    assert again.version == first.version == io.version(spark, scratch_lake, spec.target)
    assert io.read(spark, scratch_lake, spec.target).count() == 3

    land(scratch_lake, f"{name}/b.csv", CSV_BAD)
    second = ingest(spark, scratch_lake, spec)
    assert (second.files_seen, second.files_new, second.rows, second.rescued, second.version) == (2, 1, 4, 3, 1)
    df = io.read(spark, scratch_lake, spec.target)
    assert df.count() == 7
    by_batch = {r["_batch_id"]: r["count"] for r in df.groupBy("_batch_id").count().collect()}
    assert by_batch == {first.batch_id: 3, second.batch_id: 4}
    files = {r["_batch_id"]: r["_source_file"] for r in df.select("_batch_id", "_source_file").distinct().collect()}
    assert files[first.batch_id].endswith("/a.csv") and files[second.batch_id].endswith("/b.csv")

    third = ingest(spark, scratch_lake, spec)
    assert (third.files_new, third.version) == (0, 1)


def test_without_declared_schema_inferred_once_then_the_tables(
    spark: SparkSession, scratch_lake: Settings, tmp_path: Path
) -> None:
    name = unique("t_infer")
    spec = write_spec(tmp_path, name=name, format="csv", path=f"{name}/*.csv", target=f"bronze.{name}")
    land(scratch_lake, f"{name}/1.csv", "id,score\n1,2.5\n2,3.5\n")
    ingest(spark, scratch_lake, spec)
    types = {f.name: f.dataType.simpleString() for f in io.read(spark, scratch_lake, spec.target).schema.fields}
    assert (types["id"], types["score"]) == ("int", "double")

    # Inferred alone, this file would make `id` a string; the table's schema holds instead.
    land(scratch_lake, f"{name}/2.csv", "id,score\nx3,4.5\n4,5.5\n")
    r = ingest(spark, scratch_lake, spec)
    assert (r.rows, r.rescued) == (2, 1)
    df = io.read(spark, scratch_lake, spec.target)
    assert {f.name: f.dataType.simpleString() for f in df.schema.fields}["id"] == "int"
    bad = df.where("score = 4.5").first()
    assert bad is not None and bad["id"] is None
    assert json.loads(bad["_rescued_data"]) == {"_error": "id: not a valid int", "id": "x3"}


def test_path_matching_no_files_fails_naming_the_path(
    spark: SparkSession, scratch_lake: Settings, tmp_path: Path
) -> None:
    name = unique("t_empty")
    spec = write_spec(tmp_path, name=name, format="csv", path=f"{name}/*.csv", target=f"bronze.{name}")
    with pytest.raises(SourceError) as err:
        ingest(spark, scratch_lake, spec)
    assert f"{scratch_lake.landing_root}/{name}/*.csv" in str(err.value)
    assert name in str(err.value)
    assert not io.exists(spark, scratch_lake, spec.target)


def test_absolute_path_outside_the_landing_zone(spark: SparkSession, scratch_lake: Settings, tmp_path: Path) -> None:
    name = unique("t_abs")
    outside = tmp_path / "drop"
    outside.mkdir()
    (outside / "x.csv").write_text(CSV_GOOD)
    spec = write_spec(
        tmp_path, name=name, format="csv", path=str(outside / "*.csv"), target=f"bronze.{name}", schema=SCHEMA
    )
    assert ingest(spark, scratch_lake, spec).rows == 3


def test_seed_two_days_then_noop(scratch_lake: Settings) -> None:
    start, end = dt.date(2013, 1, 1), dt.date(2013, 1, 2)
    first = seed(scratch_lake, start, end)
    landing = Path(scratch_lake.landing_root)
    files = sorted(str(p.relative_to(landing)) for p in landing.rglob("*") if p.is_file())
    assert files == [
        "airlines/airlines_snapshot.csv",
        "airports/airports_snapshot.csv",
        "flights/flights_2013-01-01.csv",
        "flights/flights_2013-01-02.csv",
        "planes/planes_snapshot.parquet",
        "weather/weather_2013-01-01.json",
        "weather/weather_2013-01-02.json",
    ]
    assert (first.files_written, first.files_present) == (7, 0)
    assert first.rows_written > 1785 + 139  # two days of flights and weather plus the snapshots
    stamp = {p: p.stat().st_mtime_ns for p in landing.rglob("*") if p.is_file()}

    second = seed(scratch_lake, start, end)
    assert (second.files_written, second.files_present, second.rows_written) == (0, 7, 0)
    assert {p: p.stat().st_mtime_ns for p in landing.rglob("*") if p.is_file()} == stamp
    assert not list(landing.rglob(".*.tmp"))


def test_seeded_files_fit_the_declared_sources(spark: SparkSession, scratch_lake: Settings) -> None:
    """The shipped specs parse the shipped seed data cleanly: nothing rescued, nothing lost."""
    import pandas as pd

    seed(scratch_lake, dt.date(2013, 1, 1), dt.date(2013, 1, 2))
    suffix = uuid.uuid4().hex[:8]
    landing = Path(scratch_lake.landing_root)
    for spec in declared_sources(scratch_lake).values():
        # Same spec, private target: the shared catalog's bronze.<name> stays untouched.
        private = spec.model_copy(update={"target": f"bronze.seedcheck_{spec.name}_{suffix}"})
        r = ingest(spark, scratch_lake, private)
        files = sorted(landing.glob(spec.path))
        expected = sum(
            len(pd.read_parquet(f))
            if spec.format == "parquet"
            else sum(1 for line in f.read_text().splitlines()[1 if spec.format == "csv" else 0 :] if line)
            for f in files
        )
        assert (r.files_new, r.rows, r.rescued) == (len(files), expected, 0), spec.name
        df = io.read(spark, scratch_lake, private.target)
        assert [c for c in df.columns if not c.startswith("_")] == list(spec.schema_ or {}), spec.name
        for key in spec.keys:
            assert df.where(f"`{key}` IS NULL").count() == 0, (spec.name, key)
