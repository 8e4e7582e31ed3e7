"""silver.airlines: carrier code -> airline name."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lake.silver import PARSED
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
    expect_or_drop={**PARSED, "carrier code is null": "carrier IS NOT NULL AND trim(carrier) <> ''"},
)
