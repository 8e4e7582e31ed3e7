"""Delay measures shared by the gold aggregates, so every table defines them the same way."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

ON_TIME_MINUTES = 15  # arrived no more than 15 minutes late (the industry's on-time definition)

# Descriptions of the measures below, for the tables' column comments.
FLIGHT_COUNT_COLUMNS = {
    "flights": "Flights scheduled",
    "cancelled": "Flights cancelled",
    "diverted": "Flights diverted",
}
ARRIVAL_DELAY_COLUMNS = {
    "on_time_rate": f"Share of arrived flights at most {ON_TIME_MINUTES} minutes late",
    "mean_arr_delay": "Mean arrival delay of arrived flights, minutes",
    "p90_arr_delay": "90th percentile of the arrival delay, minutes",
}


def flight_counts() -> list[Column]:
    return [
        F.count("*").alias("flights"),
        F.sum(F.col("cancelled").cast("int")).alias("cancelled"),
        F.sum(F.col("diverted").cast("int")).alias("diverted"),
    ]


def arrival_delay() -> list[Column]:
    """On-time rate and delays over the flights that arrived (arr_delay known)."""
    return [
        F.avg((F.col("arr_delay") <= ON_TIME_MINUTES).cast("double")).alias("on_time_rate"),
        F.avg("arr_delay").alias("mean_arr_delay"),
        F.percentile("arr_delay", F.lit(0.9)).alias("p90_arr_delay"),
    ]
