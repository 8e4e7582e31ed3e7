"""silver.airports: FAA airports with their IANA time zone (used to put flights on UTC)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lake.silver import INGESTED_AT, PARSED
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
    expect_or_drop=PARSED,  # checks on the table's columns: quality/silver/airports.yml
    columns={
        "faa": "FAA airport code (upper case)",
        "name": "Airport name",
        "lat": "Latitude, degrees",
        "lon": "Longitude, degrees",
        "altitude_ft": "Altitude, feet",
        "utc_offset_hours": "Offset from UTC in hours (standard time)",
        "dst": "Daylight saving time rule: A (US), U (unknown), N (none)",
        "time_zone": "IANA time zone, e.g. America/New_York",
        **INGESTED_AT,
    },
)
