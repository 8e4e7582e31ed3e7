"""gold.route_monthly: each origin-destination route, month by month."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lake.gold._measures import ARRIVAL_DELAY_COLUMNS, FLIGHT_COUNT_COLUMNS, arrival_delay, flight_counts
from lake.tables import Table


def transform(flights: DataFrame) -> DataFrame:
    return flights.groupBy("origin", "dest", "flight_month").agg(
        *flight_counts(),
        F.countDistinct("carrier").alias("carriers"),
        F.max("distance").alias("distance"),
        F.avg("dep_delay").alias("mean_dep_delay"),
        *arrival_delay(),
    )


TABLE = Table(
    layer="gold",
    name="route_monthly",
    description=(
        "Per origin-destination per month: flights, cancelled, diverted, carriers flying it, distance, "
        "mean departure delay, on-time rate, mean and p90 arrival delay."
    ),
    owner="analytics@example.org",
    keys=("origin", "dest", "flight_month"),
    inputs=("silver.flights",),
    transform=transform,
    grain="flight_month",
    backfill_by="flight_date",
    columns={
        "origin": "Origin airport (FAA code)",
        "dest": "Destination airport (FAA code)",
        "flight_month": "First day of the month",
        **FLIGHT_COUNT_COLUMNS,
        "carriers": "Distinct carriers flying the route",
        "distance": "Route distance, miles",
        "mean_dep_delay": "Mean departure delay, minutes",
        **ARRIVAL_DELAY_COLUMNS,
    },
)
