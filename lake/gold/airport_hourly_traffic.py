"""gold.airport_hourly_traffic: departures and departure delay per NYC airport per hour."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lake.tables import Table


def transform(flights: DataFrame) -> DataFrame:
    return (
        flights.withColumn("hour_utc", F.date_trunc("hour", "sched_dep_utc"))
        .groupBy("origin", "hour_utc", "flight_date")
        .agg(
            F.count("*").alias("scheduled"),
            F.sum((~F.col("cancelled")).cast("int")).alias("departures"),
            F.avg("dep_delay").alias("mean_dep_delay"),
        )
    )


TABLE = Table(
    layer="gold",
    name="airport_hourly_traffic",
    description=(
        "Per origin airport per scheduled departure hour (UTC): flights scheduled, departures "
        "(not cancelled) and mean departure delay in minutes."
    ),
    owner="analytics@example.org",
    keys=("origin", "hour_utc"),
    inputs=("silver.flights",),
    transform=transform,
    grain="flight_date",
    backfill_by="flight_date",
    columns={
        "origin": "Origin airport (FAA code)",
        "hour_utc": "Scheduled departure hour (UTC)",
        "flight_date": "Scheduled departure date",
        "scheduled": "Flights scheduled to depart in the hour",
        "departures": "Flights that departed (not cancelled)",
        "mean_dep_delay": "Mean departure delay, minutes",
    },
)
