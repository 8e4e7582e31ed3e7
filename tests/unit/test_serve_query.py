"""The data endpoint's query layer on a tiny Delta table written with delta-rs: no Spark, no Ray.

Typed filters, total order and stable cursors over a pinned version, time travel, and the 4xx
wording. The HTTP path and the comparison with Spark SQL are in tests/e2e/test_serve_data.py.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from lake.settings import Settings
from serve.common import ApiError
from serve.data_app import GoldCatalog, decode_cursor, encode_cursor

ROWS = [
    {"carrier": c, "flight_date": dt.date(2013, 12, d), "flights": f, "on_time_rate": r}
    for c, d, f, r in [
        ("UA", 1, 175, 0.81), ("UA", 2, 178, 0.86), ("AA", 1, 86, 0.91), ("AA", 2, 93, None),
        ("B6", 1, 160, 0.77), ("B6", 2, 150, 0.70), ("DL", 1, 130, 0.88),
    ]
]  # fmt: skip


@pytest.fixture()
def catalog(scratch_lake: Settings) -> GoldCatalog:
    path = scratch_lake.table_path("gold", "carrier_daily_performance")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_deltalake(path, pa.Table.from_pylist(ROWS[:4]))  # version 0
    write_deltalake(path, pa.Table.from_pylist(ROWS), mode="overwrite")  # version 1
    return GoldCatalog(scratch_lake)


def rows(catalog: GoldCatalog, **kw: object) -> list[dict[str, object]]:
    args = {"filters": [], "columns": None, "order_by": None, "limit": 100, "cursor": None, "version": None, **kw}
    return catalog.rows(catalog.parse("carrier_daily_performance", **args)).table.to_pylist()  # type: ignore[arg-type]


def test_typed_filters_and_order(catalog: GoldCatalog) -> None:
    got = rows(catalog, filters=["flights:gt:100", "flight_date:eq:2013-12-01"], columns="carrier,flights", order_by="-flights")
    assert got == [{"carrier": "UA", "flights": 175}, {"carrier": "B6", "flights": 160}, {"carrier": "DL", "flights": 130}]
    assert [r["carrier"] for r in rows(catalog, filters=["carrier:in:AA,DL"], columns="carrier")] == ["AA", "AA", "DL"]
    assert rows(catalog, filters=["on_time_rate:null:true"], columns="carrier") == [{"carrier": "AA"}]
    # nulls sort last, whatever the direction
    assert rows(catalog, order_by="on_time_rate", columns="on_time_rate")[-1] == {"on_time_rate": None}


def test_pages_walk_a_pinned_version_without_overlap(catalog: GoldCatalog, scratch_lake: Settings) -> None:
    seen, cursor, pages = [], None, 0
    while True:
        page = catalog.rows(catalog.parse("carrier_daily_performance", [], None, "-flights", 3, cursor, None))
        seen += page.table.to_pylist()
        pages += 1
        if pages == 1:  # the table changes between pages: the walk stays on its version
            path = scratch_lake.table_path("gold", "carrier_daily_performance")
            write_deltalake(path, pa.Table.from_pylist(ROWS[:1]), mode="overwrite")
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3
    assert [r["flights"] for r in seen] == sorted((r["flights"] for r in ROWS), reverse=True)


def test_time_travel(catalog: GoldCatalog) -> None:
    assert len(rows(catalog, version=0)) == 4
    assert len(rows(catalog, version=1)) == 7
    with pytest.raises(ApiError) as err:
        rows(catalog, version=5)
    assert (err.value.status, err.value.field) == (422, "version")
    assert "the latest is 1" in err.value.message


@pytest.mark.parametrize(
    ("kw", "field", "words"),
    [
        ({"filters": ["flights:gt:lots"]}, "filter", "not a valid int64"),
        ({"filters": ["flight_date:eq:2013-13-01"]}, "filter", "not a valid date32"),
        ({"filters": ["on_time_rate:gt:nan"]}, "filter", "finite"),
        ({"filters": ["secret:eq:1"]}, "filter", "unknown column 'secret'"),
        ({"filters": ["carrier:null:yes"]}, "filter", "null takes true or false"),
        ({"columns": "carrier,carrier"}, "columns", "named twice"),
        ({"order_by": "flights,-flights"}, "order_by", "named twice"),
        ({"cursor": encode_cursor(1, 3, "0" * 16)}, "cursor", "another query"),
        ({"cursor": "%%%"}, "cursor", "not a cursor"),
        ({"cursor": encode_cursor(0, 3, "0" * 16), "version": 1}, "version", "differs from the cursor"),
    ],
)
def test_bad_requests_name_the_field(catalog: GoldCatalog, kw: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(ApiError) as err:
        rows(catalog, **kw)
    assert (err.value.status, err.value.field) == (422, field)
    assert words in err.value.message


def test_unknown_and_unbuilt_tables_are_404(catalog: GoldCatalog) -> None:
    for name in ("flights", "route_monthly"):  # silver is never served; route_monthly is not built here
        with pytest.raises(ApiError) as err:
            catalog.parse(name, [], None, None, 1, None, None)
        assert (err.value.status, err.value.field) == (404, "name")
    entry = catalog.entry("route_monthly")
    assert entry["version"] is None and entry["owner"] == "analytics@example.org"


def test_cursor_round_trip() -> None:
    assert decode_cursor(encode_cursor(4, 200, "abc")) == (4, 200, "abc")
    with pytest.raises(ApiError):
        decode_cursor(encode_cursor(-1, 0, "abc"))
