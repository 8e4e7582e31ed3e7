"""silver.airports: FAA airports with their IANA time zone (used to put flights on UTC)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lake.silver import PARSED
from lake.tables import Table


def transform(bronze: DataFrame) -> DataFrame:
    return bronze.select(
        F.upper(F.trim("faa")).alias("faa"),
        "name",
        "lat",
        "lon",
        F.col("alt").alias("altitude_ft"),
        F.col("tz").alias("utc_offset_hours"),
        "dst",
        F.col("tzone").alias("time_zone"),
        "_ingested_at",
    )


TABLE = Table(
    layer="silver",
    name="airports",
    description="Airports by FAA code: name, location, altitude and IANA time zone.",
    owner="reference-data@example.org",
    keys=("faa",),
    inputs=("bronze.airports",),
    transform=transform,
    expect_or_drop={
        **PARSED,
        "faa code is null": "faa IS NOT NULL AND trim(faa) <> ''",
        "latitude out of range": "lat IS NULL OR lat BETWEEN -90 AND 90",
        "longitude out of range": "lon IS NULL OR lon BETWEEN -180 AND 180",
    },
)
