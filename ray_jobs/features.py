"""Point-in-time flight features with Ray Data, written to Delta feature tables in gold.

Every feature of a flight scheduled on (local) day D is computed as of the start of D: the
trailing delay figures cover days D-w .. D-1 only, so nothing that happened on D or later can
leak into them. Each feature row carries `event_ts` = D 00:00 UTC and training entities carry
the same cutoff, so Feast's point-in-time join picks exactly the row for D. Weather at the
origin at the scheduled hour is the one exception, by design: it stands in for the forecast a
scheduler would have (documented in docs/ml.md).

The declarations below (`FEATURE_TABLES`) name each table's inputs: lineage reads them to draw
silver -> features -> model -> endpoint. Run as a job: `python -m ray_jobs.features`.
"""

from __future__ import annotations

import argparse
import datetime as dt
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from lake.settings import Settings, get_settings

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs
    from deltalake import DeltaTable
    from ray.data import Dataset

OWNER = "ml-platform@example.org"
WINDOWS = (7, 28)
ONLINE_DAYS = 7  # days loaded into the online store by a full run
FLIGHT_COLUMNS = [
    "flight_id", "flight_date", "carrier", "origin", "dest", "tailnum", "sched_dep_utc",
    "arr_delay", "cancelled", "diverted", "distance",
]  # fmt: skip
WEATHER_COLUMNS = [
    "temp_f", "humidity_pct", "wind_speed_mph", "wind_gust_mph", "precip_in", "pressure_mb", "visibility_mi",
]  # fmt: skip
# Small closed vocabularies as stable integer codes (xgboost takes numbers; unknown -> -1).
AIRCRAFT_TYPES = ("Fixed wing multi engine", "Fixed wing single engine", "Rotorcraft")
ENGINE_TYPES = ("Turbo-fan", "Turbo-jet", "Turbo-prop", "Turbo-shaft", "Reciprocating", "4 Cycle")


@dataclass(frozen=True)
class FeatureTable:
    """A feature table: where it lives, its entity key, what it is computed from."""

    table: str  # layer.name in the lake
    entity: str  # join key (a Feast entity)
    inputs: tuple[str, ...]
    description: str
    owner: str = OWNER

    @property
    def kind(self) -> str:
        return self.table.split(".", 1)[1].removesuffix("_features")


def _history(kind: str, key: str) -> FeatureTable:
    return FeatureTable(
        table=f"gold.{kind}_features",
        entity=key,
        inputs=("silver.flights",),
        description=f"Trailing {'/'.join(map(str, WINDOWS))}-day delay rate and mean arrival delay per {kind}, "
        "as of the start of each day (days before it only).",
    )


FEATURE_TABLES: tuple[FeatureTable, ...] = (
    _history("carrier", "carrier"),
    _history("route", "route"),
    _history("origin", "origin"),
    _history("carrier_route", "carrier_route"),
    FeatureTable(
        table="gold.flight_features",
        entity="flight_id",
        inputs=("silver.flights", "silver.weather", "silver.planes", "silver.airports"),
        description="Per scheduled flight: calendar (local hour, weekday, month, holidays), origin weather "
        "at the scheduled hour, plane age and type, distance.",
    ),
)
HISTORY_TABLES = FEATURE_TABLES[:4]
# flight_features also carries the history tables' keys, so scoring can join them without silver.
ENTITY_KEYS = tuple(ft.entity for ft in HISTORY_TABLES)
INPUT_TABLES = tuple(sorted({t for ft in FEATURE_TABLES for t in ft.inputs}))


def history_feature_names(kind: str) -> list[str]:
    return [f"{kind}_{m}_{w}d" for w in WINDOWS for m in ("flights", "delay_rate", "mean_delay")]


FLIGHT_FEATURE_NAMES = [
    "dep_hour", "weekday", "month", "is_holiday", "days_to_holiday", "distance",
    *WEATHER_COLUMNS, "plane_age", "seats", "engines", "aircraft_type", "engine_type",
]  # fmt: skip


def feature_names() -> list[str]:
    """Every model input, in a fixed order."""
    return [n for ft in HISTORY_TABLES for n in history_feature_names(ft.kind)] + FLIGHT_FEATURE_NAMES


# ---------------------------------------------------------------- pure transforms (pandas)


def cutoff_ts(dates: pd.Series) -> pd.Series:
    """The moment features for a day are known: its start, as a UTC timestamp."""
    return pd.to_datetime(dates).dt.tz_localize("UTC")


def label_and_keys(batch: pd.DataFrame, threshold_min: int) -> pd.DataFrame:
    """Adds route, the label (late by more than the threshold, cancelled or diverted) and delay sums."""
    out = batch.copy()
    out["route"] = out["origin"] + "-" + out["dest"]
    out["carrier_route"] = out["carrier"] + ":" + out["route"]
    late = out["arr_delay"].fillna(0) > threshold_min
    out["delayed"] = (late | out["cancelled"].astype(bool) | out["diverted"].astype(bool)).astype("int64")
    out["has_delay"] = out["arr_delay"].notna().astype("int64")
    out["delay_sum"] = out["arr_delay"].fillna(0).astype("float64")
    return out


SUMS = ("n", "delayed", "delay_sum", "delay_n")


def daily_sums(batch: pd.DataFrame) -> pd.DataFrame:
    """Per history kind, key and day: flights, delayed flights, summed and counted arrival delays."""
    parts = []
    for ft in HISTORY_TABLES:
        g = batch.groupby([ft.entity, "flight_date"], as_index=False).agg(
            n=("flight_id", "size"), delayed=("delayed", "sum"), delay_sum=("delay_sum", "sum"), delay_n=("has_delay", "sum")
        )
        parts.append(g.rename(columns={ft.entity: "key"}).assign(kind=ft.kind))
    return pd.concat(parts, ignore_index=True)


def trailing(daily: pd.DataFrame, key: str, kind: str, last_date: dt.date) -> pd.DataFrame:
    """Per key and day D, trailing windows over days D-w .. D-1 (shifted: D itself never counts).

    `daily` holds one key's rows (flight_date, n, delayed, delay_sum, delay_n); days without
    flights count as zero; rows run to `last_date` so tomorrow's features exist for scoring.
    """
    value = daily[key].iloc[0]
    days = pd.date_range(pd.Timestamp(daily["flight_date"].min()), pd.Timestamp(last_date), freq="D")
    series = (
        daily.assign(flight_date=pd.to_datetime(daily["flight_date"]))
        .set_index("flight_date")[["n", "delayed", "delay_sum", "delay_n"]]
        .reindex(days, fill_value=0)
        .astype("float64")
    )
    out = pd.DataFrame({key: value, "feature_date": days.date})
    for w in WINDOWS:
        past = series.rolling(w, min_periods=1).sum().shift(1).fillna(0)
        out[f"{kind}_flights_{w}d"] = past["n"].to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"{kind}_delay_rate_{w}d"] = np.where(past["n"] > 0, past["delayed"] / past["n"], np.nan)
            out[f"{kind}_mean_delay_{w}d"] = np.where(
                past["delay_n"] > 0, past["delay_sum"] / past["delay_n"], np.nan
            )
    out["event_ts"] = cutoff_ts(out["feature_date"])
    return out


def _holidays(years: list[int]) -> np.ndarray:
    import holidays

    return np.array(sorted(holidays.country_holidays("US", years=years)), dtype="datetime64[D]")


def _codes(values: pd.Series, vocabulary: tuple[str, ...]) -> pd.Series:
    mapping = {v: i for i, v in enumerate(vocabulary)}
    return values.map(mapping).fillna(-1).astype("int64")


def flight_context(
    batch: pd.DataFrame, weather: pd.DataFrame, planes: pd.DataFrame, time_zones: dict[str, str]
) -> pd.DataFrame:
    """Calendar, weather at the scheduled hour, plane and distance for each flight of `batch`."""
    sched = pd.to_datetime(batch["sched_dep_utc"], utc=True)
    local_hour = pd.Series(index=batch.index, dtype="int64")
    for origin, tz in time_zones.items():
        rows = batch["origin"] == origin
        local_hour[rows] = sched[rows].dt.tz_convert(tz).dt.hour
    dates = pd.to_datetime(batch["flight_date"])
    day = dates.to_numpy(dtype="datetime64[D]")
    hols = _holidays(sorted({int(y) for y in dates.dt.year} | {int(y) + 1 for y in dates.dt.year}))
    nearest = np.abs(day[:, None] - hols[None, :]).min(axis=1).astype("int64") if len(day) else np.array([], "int64")
    out = pd.DataFrame(
        {
            "flight_id": batch["flight_id"],
            "feature_date": dates.dt.date,
            "event_ts": cutoff_ts(batch["flight_date"]),
            "dep_hour": local_hour.fillna(-1).astype("int64"),
            "weekday": dates.dt.weekday.astype("int64"),
            "month": dates.dt.month.astype("int64"),
            "is_holiday": (nearest == 0).astype("int64"),
            "days_to_holiday": np.minimum(nearest, 30),
            "distance": batch["distance"].astype("float64"),
            "hour_utc": sched.dt.floor("h"),
            "origin": batch["origin"],
            "tailnum": batch["tailnum"],
        }
    )
    w = weather.assign(hour_utc=pd.to_datetime(weather["observed_at"], utc=True).dt.floor("h"))
    w = w.drop_duplicates(["origin", "hour_utc"])[["origin", "hour_utc", *WEATHER_COLUMNS]]
    out = out.merge(w, on=["origin", "hour_utc"], how="left")
    p = planes[["tailnum", "year_built", "seats", "engines", "aircraft_type", "engine_type"]].drop_duplicates("tailnum")
    out = out.merge(p, on="tailnum", how="left")
    out["plane_age"] = (pd.to_datetime(out["feature_date"]).dt.year - out["year_built"]).astype("float64")
    out["seats"] = out["seats"].astype("float64")
    out["engines"] = out["engines"].astype("float64")
    out["aircraft_type"] = _codes(out["aircraft_type"], AIRCRAFT_TYPES)
    out["engine_type"] = _codes(out["engine_type"], ENGINE_TYPES)
    for column in WEATHER_COLUMNS:
        out[column] = out[column].astype("float64")
    keys = batch[list(ENTITY_KEYS)].reset_index(drop=True)
    return pd.concat([out[["flight_id", "feature_date", "event_ts", *FLIGHT_FEATURE_NAMES]], keys], axis=1)


# ---------------------------------------------------------------- the lake, for Ray jobs


def is_remote(uri: str) -> bool:
    return uri.startswith(("s3a://", "s3://"))


def lake_filesystem(settings: Settings, uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path on it for a lake location (a local path or s3a://).

    pyarrow knows neither `s3a://` nor the profile's endpoint, so both come from
    `object_store`, as for Spark and delta-rs; credentials from the environment (the AWS
    default chain) on whichever node the filesystem is unpickled.
    """
    import pyarrow.fs as pafs

    if not is_remote(uri):
        return pafs.LocalFileSystem(), uri.removeprefix("file://")
    o = settings.object_store
    endpoint = urlparse(o.endpoint_url) if o.endpoint_url else None
    fs = pafs.S3FileSystem(
        region=o.region,
        endpoint_override=endpoint.netloc if endpoint else None,
        scheme=endpoint.scheme if endpoint else "https",
        force_virtual_addressing=bool(endpoint) and not o.path_style,  # without an endpoint: AWS's own choice
    )
    return fs, uri.split("://", 1)[1].rstrip("/")


def delta_table(settings: Settings, table: str, version: int | None = None) -> DeltaTable:
    """A lake table through delta-rs, local or on the object store (`lake.io.storage_options`)."""
    from deltalake import DeltaTable

    from lake.io import path_of, storage_options

    return DeltaTable(path_of(settings, table), version=version, storage_options=storage_options(settings))


def read_table(settings: Settings, table: str, version: int | None = None, columns: list[str] | None = None) -> Dataset:
    """A lake table as a Ray Data dataset; the read tasks run on any node.

    delta-rs reads the Delta log (`storage_options`); on the object store the tasks read the
    Parquet files with pyarrow's own S3 client rooted at the table, rather than through
    delta-rs's Python filesystem handler, which routes every read through Python.
    """
    import pyarrow.fs as pafs
    import ray.data

    from lake.io import path_of, storage_options

    path = path_of(settings, table)
    filesystem = None
    if is_remote(path):
        fs, root = lake_filesystem(settings, path)
        filesystem = pafs.SubTreeFileSystem(root, fs)
    return ray.data.read_delta(
        path, version=version, columns=columns, storage_options=storage_options(settings), filesystem=filesystem
    )


def delta_version(settings: Settings, table: str) -> int:
    return int(delta_table(settings, table).version())


# ---------------------------------------------------------------- the Ray Data job


def quiet_ray_data() -> None:
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = True  # same input, same blocks, same result


def compute(settings: Settings, versions: dict[str, int] | None = None) -> dict[str, pa.Table]:
    """Every feature table, computed on Ray Data from silver (at `versions` when given)."""
    import pyarrow as pa

    versions = versions or {t: delta_version(settings, t) for t in INPUT_TABLES}
    quiet_ray_data()
    flights = read_table(settings, "silver.flights", versions["silver.flights"], FLIGHT_COLUMNS).map_batches(
        partial(label_and_keys, threshold_min=settings.ml.delay_threshold_min), batch_format="pandas"
    )
    flights = flights.materialize()
    last_day = flights.max("flight_date")
    if last_day is None:
        raise ValueError("silver.flights is empty: run the pipeline first (`lakehouse run`)")
    last_date = pd.Timestamp(last_day).date() + dt.timedelta(days=1)  # tomorrow: what scoring needs

    # Ray Data scans and pre-aggregates per block (no shuffle); the per-day sums are small
    # (keys x days), so the trailing windows run on them in one place.
    partial_sums = flights.map_batches(daily_sums, batch_format="pandas").to_pandas()
    sums = partial_sums.groupby(["kind", "key", "flight_date"], as_index=False)[list(SUMS)].sum()
    out: dict[str, pa.Table] = {}
    for ft in HISTORY_TABLES:
        daily = sums[sums["kind"] == ft.kind].rename(columns={"key": ft.entity}).drop(columns="kind")
        rows = [trailing(group, ft.entity, ft.kind, last_date) for _, group in daily.groupby(ft.entity)]
        out[ft.table] = pa.Table.from_pandas(pd.concat(rows, ignore_index=True), preserve_index=False).sort_by(
            [("feature_date", "ascending"), (ft.entity, "ascending")]
        )

    small = {
        t: read_table(settings, t, versions[t]).to_pandas()
        for t in ("silver.weather", "silver.planes", "silver.airports")
    }
    zones = dict(zip(small["silver.airports"]["faa"], small["silver.airports"]["time_zone"], strict=True))
    context = flights.map_batches(
        partial(
            flight_context,
            weather=small["silver.weather"],
            planes=small["silver.planes"],
            time_zones={o: zones[o] for o in _origins(flights) if o in zones},
        ),
        batch_format="pandas",
    )
    out["gold.flight_features"] = _arrow(context)
    return out


def _origins(flights: Dataset) -> list[str]:
    return sorted(str(o) for o in flights.unique("origin"))


def _arrow(ds: Dataset) -> pa.Table:
    import pyarrow as pa

    tables = [pa.Table.from_pandas(df, preserve_index=False) for df in ds.iter_batches(batch_format="pandas", batch_size=None)]
    table = pa.concat_tables(tables, promote_options="default") if tables else pa.table({})
    return table.sort_by([("feature_date", "ascending")])


def write(settings: Settings, tables: dict[str, pa.Table], start: dt.date | None = None, end: dt.date | None = None) -> dict[str, int]:
    """Replace the rows of days [start, end] (all when None) of each table in one Delta commit."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable, write_deltalake

    from lake.io import path_of, storage_options

    options = storage_options(settings)
    versions = {}
    for name, table in tables.items():
        path = path_of(settings, name)
        if start or end:
            mask = pc.and_(
                pc.greater_equal(table["feature_date"], pd.Timestamp(start or dt.date.min).date()),
                pc.less_equal(table["feature_date"], pd.Timestamp(end or dt.date.max).date()),
            )
            table = table.filter(mask)
        exists = DeltaTable.is_deltatable(path, storage_options=options)
        predicate = None
        if exists and (start or end):
            predicate = " AND ".join(
                p
                for p in (
                    f"feature_date >= '{start.isoformat()}'" if start else "",
                    f"feature_date <= '{end.isoformat()}'" if end else "",
                )
                if p
            )
        if exists:
            write_deltalake(path, table, mode="overwrite", predicate=predicate, storage_options=options)
        else:
            write_deltalake(path, table, mode="append", storage_options=options)
        versions[name] = delta_version(settings, name)
    return versions


def run(settings: Settings, start: dt.date | None = None, end: dt.date | None = None) -> dict[str, Any]:
    """Compute and write every feature table, `feast apply` them, load the online store.

    The online store gets the days written, or the last `ONLINE_DAYS` when every day was
    rewritten (serving only ever asks for recent days). Returns input and output versions.
    """
    from features.store import materialize, publish

    inputs = {t: delta_version(settings, t) for t in INPUT_TABLES}
    tables = compute(settings, inputs)
    outputs = write(settings, tables, start, end)
    publish(settings, outputs)
    import pyarrow.compute as pc

    last = pc.max(tables["gold.flight_features"]["feature_date"]).as_py()
    online_end = min(end or last, last)
    online_start = start or online_end - dt.timedelta(days=ONLINE_DAYS - 1)
    materialize(settings, online_start, online_end)
    return {"inputs": inputs, "outputs": outputs, "online": [online_start.isoformat(), online_end.isoformat()]}


def main(argv: list[str] | None = None) -> None:
    from ray_jobs.cluster import init_ray

    parser = argparse.ArgumentParser(prog="python -m ray_jobs.features", description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=dt.date.fromisoformat, help="first day to (re)write (default: all)")
    parser.add_argument("--end", type=dt.date.fromisoformat, help="last day to (re)write (default: all)")
    args = parser.parse_args(argv)
    settings = get_settings()
    init_ray(settings)
    result = run(settings, args.start, args.end)
    print(f"feature tables written: {result}")


if __name__ == "__main__":
    from lake.process import run_then_exit

    run_then_exit(main)  # a finished job must not abort in native teardown (lake/process.py)
