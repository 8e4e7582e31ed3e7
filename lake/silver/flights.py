"""silver.flights: one row per flight, typed, on UTC, deduplicated by flight id.

Scheduled local times become UTC timestamps with the airports' time zones (origin for the
departure, destination for the arrival, which may fall on the next day). A flight that never
departed is cancelled; one that departed but has no arrival delay was diverted.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lake.silver import INGESTED_AT, PARSED
from lake.tables import Table


def _local_time(date: Column, hhmm: Column) -> Column:
    """`date` at the wall-clock time `hhmm` (e.g. 1345), as a timestamp in that local zone."""
    minutes = (hhmm / 100).cast("int") * 60 + hhmm % 100
    return F.to_timestamp(date) + F.make_interval(mins=minutes)


def flight_id(date: Column, carrier: Column, flight: Column, origin: Column) -> Column:
    """Stable id, e.g. 20130101-UA-1545-EWR: a carrier flies a flight number once a day per origin."""
    return F.concat_ws("-", F.date_format(date, "yyyyMMdd"), carrier, flight.cast("string"), origin)


def transform(bronze: DataFrame, airports: DataFrame) -> DataFrame:
    tz = airports.select("faa", "time_zone")
    origin_tz = tz.withColumnsRenamed({"faa": "origin", "time_zone": "origin_tz"})
    dest_tz = tz.withColumnsRenamed({"faa": "dest", "time_zone": "dest_tz"})
    f = (
        bronze.withColumn("carrier", F.upper(F.trim("carrier")))
        .withColumn("origin", F.upper(F.trim("origin")))
        .withColumn("dest", F.upper(F.trim("dest")))
        .withColumn("flight_date", F.make_date("year", "month", "day"))
        .join(F.broadcast(origin_tz), "origin", "left")
        .join(F.broadcast(dest_tz), "dest", "left")
    )
    sched_dep = F.to_utc_timestamp(_local_time(F.col("flight_date"), F.col("sched_dep_time")), F.col("origin_tz"))
    arr_local = F.to_utc_timestamp(_local_time(F.col("flight_date"), F.col("sched_arr_time")), F.col("dest_tz"))
    f = f.withColumn("sched_dep_utc", sched_dep).withColumn(
        "sched_arr_utc",
        # An arrival clock time "before" the departure means the next day.
        F.when(arr_local < F.col("sched_dep_utc"), arr_local + F.expr("INTERVAL 1 DAY")).otherwise(arr_local),
    )
    return f.select(
        flight_id(F.col("flight_date"), F.col("carrier"), F.col("flight"), F.col("origin")).alias("flight_id"),
        "flight_date",
        F.trunc("flight_date", "month").alias("flight_month"),
        "carrier",
        "flight",
        F.upper(F.trim("tailnum")).alias("tailnum"),
        "origin",
        "dest",
        "sched_dep_utc",
        "sched_arr_utc",
        (F.col("sched_dep_utc") + F.make_interval(mins=F.col("dep_delay"))).alias("dep_utc"),
        (F.col("sched_arr_utc") + F.make_interval(mins=F.col("arr_delay"))).alias("arr_utc"),
        "dep_delay",
        "arr_delay",
        "air_time",
        "distance",
        F.col("dep_time").isNull().alias("cancelled"),
        (F.col("dep_time").isNotNull() & F.col("arr_delay").isNull()).alias("diverted"),
        "_ingested_at",
    )


TABLE = Table(
    layer="silver",
    name="flights",
    description=(
        "Flights departing NYC, one row per flight id: scheduled and actual times in UTC, delays, "
        "cancelled and diverted flags."
    ),
    owner="flight-ops-data@example.org",
    keys=("flight_id",),
    inputs=("bronze.flights", "silver.airports"),
    transform=transform,
    partition_by=("flight_month",),
    # Guards on raw values the transform needs (make_date fails on a 30 February; a clock time
    # of 2575 would shift the UTC timestamps). Checks on the table's own columns, null keys
    # included: quality/silver/flights.yml.
    expect_or_drop={
        **PARSED,
        "invalid date": (
            "year IS NULL OR month IS NULL OR day IS NULL "  # a missing part is the contract's null flight date
            "OR try_to_date(format_string('%04d-%02d-%02d', year, month, day)) IS NOT NULL"
        ),
        "scheduled time out of range": (
            "sched_dep_time BETWEEN 0 AND 2359 AND sched_dep_time % 100 < 60 "
            "AND (sched_arr_time IS NULL OR (sched_arr_time BETWEEN 0 AND 2400 AND sched_arr_time % 100 < 60))"
        ),
    },
    columns={
        "flight_id": "Stable flight id: yyyyMMdd-carrier-flight-origin",
        "flight_date": "Scheduled departure date (local to the origin)",
        "flight_month": "First day of the flight_date's month (partition column)",
        "carrier": "Two-letter carrier code",
        "flight": "Flight number",
        "tailnum": "Tail number of the aircraft",
        "origin": "Origin airport (FAA code)",
        "dest": "Destination airport (FAA code)",
        "sched_dep_utc": "Scheduled departure (UTC)",
        "sched_arr_utc": "Scheduled arrival (UTC)",
        "dep_utc": "Actual departure (UTC); null when cancelled",
        "arr_utc": "Actual arrival (UTC); null when cancelled or diverted",
        "dep_delay": "Departure delay, minutes (negative: early)",
        "arr_delay": "Arrival delay, minutes (negative: early)",
        "air_time": "Time in the air, minutes",
        "distance": "Distance between the airports, miles",
        "cancelled": "The flight never departed",
        "diverted": "The flight departed but has no arrival delay (diverted)",
        **INGESTED_AT,
    },
)
