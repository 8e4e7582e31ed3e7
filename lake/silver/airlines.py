"""silver.airlines: carrier code -> airline name."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lake.silver import INGESTED_AT, PARSED
from lake.tables import Table


def transform(bronze: DataFrame) -> DataFrame:
    return bronze.select(
        F.upper(F.trim("carrier")).alias("carrier"),
        F.trim("name").alias("name"),
        "_ingested_at",
    )


TABLE = Table(
    layer="silver",
    name="airlines",
    description="Airlines by two-letter carrier code.",
    owner="reference-data@example.org",
    keys=("carrier",),
    inputs=("bronze.airlines",),
    transform=transform,
    expect_or_drop=PARSED,  # checks on the table's columns: quality/silver/airlines.yml
    columns={"carrier": "Two-letter carrier code (upper case)", "name": "Airline name", **INGESTED_AT},
)
