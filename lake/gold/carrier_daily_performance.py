"""gold.carrier_daily_performance: how each airline did each day."""

from __future__ import annotations

from pyspark.sql import DataFrame

from lake.gold._measures import ARRIVAL_DELAY_COLUMNS, FLIGHT_COUNT_COLUMNS, arrival_delay, flight_counts
from lake.tables import Table


def transform(flights: DataFrame) -> DataFrame:
    return flights.groupBy("carrier", "flight_date").agg(*flight_counts(), *arrival_delay())


TABLE = Table(
    layer="gold",
    name="carrier_daily_performance",
    description=(
        "Per carrier per day: flights, cancelled, diverted, on-time rate (arrival delay <= 15 min), "
        "mean and p90 arrival delay in minutes."
    ),
    owner="analytics@example.org",
    keys=("carrier", "flight_date"),
    inputs=("silver.flights",),
    transform=transform,
    grain="flight_date",
    backfill_by="flight_date",
    columns={
        "carrier": "Two-letter carrier code",
        "flight_date": "Scheduled departure date",
        **FLIGHT_COUNT_COLUMNS,
        **ARRIVAL_DELAY_COLUMNS,
    },
)
