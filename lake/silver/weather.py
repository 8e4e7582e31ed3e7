"""silver.weather: hourly observations per NYC airport, keyed by the UTC hour."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lake.silver import INGESTED_AT, PARSED
from lake.tables import Table


def transform(bronze: DataFrame) -> DataFrame:
    return bronze.select(
        F.upper(F.trim("origin")).alias("origin"),
        F.col("time_hour").alias("observed_at"),
        F.col("temp").alias("temp_f"),
        F.col("dewp").alias("dewpoint_f"),
        F.col("humid").alias("humidity_pct"),
        F.col("wind_dir").alias("wind_dir_deg"),
        F.col("wind_speed").alias("wind_speed_mph"),
        F.col("wind_gust").alias("wind_gust_mph"),
        F.col("precip").alias("precip_in"),
        F.col("pressure").alias("pressure_mb"),
        F.col("visib").alias("visibility_mi"),
        "_ingested_at",
    )


TABLE = Table(
    layer="silver",
    name="weather",
    description="Hourly weather at EWR, JFK and LGA, one row per airport and UTC hour.",
    owner="flight-ops-data@example.org",
    keys=("origin", "observed_at"),
    inputs=("bronze.weather",),
    transform=transform,
    expect_or_drop=PARSED,  # checks on the table's columns: quality/silver/weather.yml
    columns={
        "origin": "Weather station: EWR, JFK or LGA",
        "observed_at": "Hour of the observation (UTC)",
        "temp_f": "Temperature, F",
        "dewpoint_f": "Dew point, F",
        "humidity_pct": "Relative humidity, percent",
        "wind_dir_deg": "Wind direction, degrees",
        "wind_speed_mph": "Wind speed, mph",
        "wind_gust_mph": "Wind gust speed, mph",
        "precip_in": "Precipitation, inches",
        "pressure_mb": "Sea level pressure, millibars",
        "visibility_mi": "Visibility, miles",
        **INGESTED_AT,
    },
)
