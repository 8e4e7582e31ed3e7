"""silver.planes: aircraft by tail number."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lake.silver import INGESTED_AT, PARSED
from lake.tables import Table


def transform(bronze: DataFrame) -> DataFrame:
    return bronze.select(
        F.upper(F.trim("tailnum")).alias("tailnum"),
        F.col("year").alias("year_built"),
        F.col("type").alias("aircraft_type"),
        "manufacturer",
        "model",
        "engines",
        "seats",
        F.col("speed").alias("cruise_speed_mph"),
        F.col("engine").alias("engine_type"),
        "_ingested_at",
    )


TABLE = Table(
    layer="silver",
    name="planes",
    description="Aircraft by tail number: build year, type, manufacturer, model, seats, engines.",
    owner="fleet-data@example.org",
    keys=("tailnum",),
    inputs=("bronze.planes",),
    transform=transform,
    expect_or_drop=PARSED,  # checks on the table's columns: quality/silver/planes.yml
    columns={
        "tailnum": "Tail number (upper case)",
        "year_built": "Year the aircraft was built",
        "aircraft_type": "Aircraft type, e.g. Fixed wing multi engine",
        "manufacturer": "Manufacturer",
        "model": "Model",
        "engines": "Number of engines",
        "seats": "Number of seats",
        "cruise_speed_mph": "Average cruising speed, mph",
        "engine_type": "Engine type, e.g. Turbo-fan",
        **INGESTED_AT,
    },
)
