"""The data endpoint over real HTTP against a running Serve, checked against Spark SQL on the same lake.

Filters, ordering, cursor pages and time travel must return exactly what Spark SQL returns for the
same query; bad input gets a 4xx naming the field; overload is shed with 503.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from typing import Any

import httpx
import pyarrow as pa
import pytest
from pyspark.sql import SparkSession

from lake import io
from tests.e2e.conftest import ServeApp

pytestmark = [pytest.mark.e2e, pytest.mark.ray, pytest.mark.spark]


def spark_rows(spark: SparkSession, app: ServeApp, sql: str, table: str) -> list[dict[str, Any]]:
    """Run `sql` with `{t}` standing for the table's Delta location; rows as JSON-like dicts."""
    path = io.path_of(app.lake.settings, f"gold.{table}")
    return [normalise(r.asDict()) for r in spark.sql(sql.format(t=f"delta.`{path}`")).collect()]


def normalise(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, dt.datetime):
            value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
            value = value.astimezone(dt.UTC).replace(tzinfo=None).isoformat()
        elif isinstance(value, dt.date):
            value = value.isoformat()
        elif isinstance(value, str) and "T" in value and value.endswith("+00:00"):
            value = value.removesuffix("+00:00")
        out[key] = value
    return out


def same(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], float) or isinstance(b[key], float):
                assert math.isclose(a[key], b[key], rel_tol=1e-9), (key, a, b)
            else:
                assert a[key] == b[key], (key, a, b)


def all_pages(client: httpx.Client, path: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    rows: list[dict[str, Any]] = []
    pages, cursor = 0, None
    while True:
        response = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        rows += [normalise(r) for r in body["rows"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return rows, pages


def test_catalog_lists_gold_tables_with_owner_schema_version(serve_app: ServeApp, spark: SparkSession) -> None:
    with serve_app.client() as client:
        tables = client.get("/v1/tables").json()["tables"]
    names = [t["name"] for t in tables]
    assert names == ["airport_hourly_traffic", "carrier_daily_performance", "route_monthly"]
    carrier = next(t for t in tables if t["name"] == "carrier_daily_performance")
    assert carrier["owner"] == "analytics@example.org"
    assert carrier["keys"] == ["carrier", "flight_date"]
    assert carrier["version"] == io.version(spark, serve_app.lake.settings, "gold.carrier_daily_performance")
    assert {"name": "flight_date", "type": "date32[day]", "nullable": True, "filterable": True} in carrier["schema"]
    committed = dt.datetime.fromisoformat(carrier["freshness"]["last_commit"])
    assert dt.timedelta(0) <= dt.datetime.now(dt.UTC) - committed < dt.timedelta(hours=2)


def test_filters_order_and_pages_match_spark_sql(serve_app: ServeApp, spark: SparkSession) -> None:
    params = {
        "filter": ["carrier:in:UA,AA,B6,DL", "flights:gt:50", "flight_date:le:2013-12-02"],
        "columns": "carrier,flight_date,flights,on_time_rate,p90_arr_delay",
        "order_by": "-flights,carrier",
        "limit": 3,
    }
    with serve_app.client() as client:
        ours, pages = all_pages(client, "/v1/tables/carrier_daily_performance/rows", params)
    theirs = spark_rows(
        spark,
        serve_app,
        "SELECT carrier, flight_date, flights, on_time_rate, p90_arr_delay FROM {t} "
        "WHERE carrier IN ('UA', 'AA', 'B6', 'DL') AND flights > 50 AND flight_date <= DATE'2013-12-02' "
        "ORDER BY flights DESC, carrier, flight_date",
        "carrier_daily_performance",
    )
    assert len(theirs) >= 7  # several pages really were walked
    assert pages == math.ceil(len(theirs) / 3)
    same(ours, theirs)


def test_timestamp_filters_match_spark_sql(serve_app: ServeApp, spark: SparkSession) -> None:
    params = {"filter": ["origin:eq:JFK", "hour_utc:ge:2013-12-02T12:00:00", "hour_utc:lt:2013-12-02T18:00:00Z"]}
    with serve_app.client() as client:
        ours, _ = all_pages(client, "/v1/tables/airport_hourly_traffic/rows", {**params, "limit": 1000})
    theirs = spark_rows(
        spark,
        serve_app,
        "SELECT * FROM {t} WHERE origin = 'JFK' AND hour_utc >= TIMESTAMP'2013-12-02 12:00:00' "
        "AND hour_utc < TIMESTAMP'2013-12-02 18:00:00' ORDER BY origin, hour_utc",
        "airport_hourly_traffic",
    )
    assert len(theirs) == 6
    same(ours, theirs)


def test_time_travel_and_cursor_pinned_to_a_version(serve_app: ServeApp, spark: SparkSession) -> None:
    table = "carrier_daily_performance"
    old = serve_app.lake.first_versions[table]
    with serve_app.client() as client:
        latest = client.get(f"/v1/tables/{table}").json()["version"]
        assert latest > old
        ours, _ = all_pages(client, f"/v1/tables/{table}/rows", {"version": old, "limit": 7})
        # a cursor carries its version: paging "latest" keeps reading the version page 1 came from
        first = client.get(f"/v1/tables/{table}/rows", params={"limit": 2}).json()
        assert first["version"] == latest
        second = client.get(f"/v1/tables/{table}/rows", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        assert second["version"] == latest
    theirs = spark_rows(spark, serve_app, f"SELECT * FROM {{t}} VERSION AS OF {old} ORDER BY carrier, flight_date", table)
    assert {r["flight_date"] for r in theirs} == {"2013-12-01"}  # before the second day was published
    same(ours, theirs)


def test_arrow_ipc_matches_json(serve_app: ServeApp) -> None:
    params = {"filter": "origin:eq:EWR", "columns": "origin,dest,flights,mean_arr_delay", "limit": 50}
    with serve_app.client() as client:
        as_json = client.get("/v1/tables/route_monthly/rows", params=params).json()
        by_accept = client.get(
            "/v1/tables/route_monthly/rows", params=params, headers={"Accept": "application/vnd.apache.arrow.stream"}
        )
        by_param = client.get("/v1/tables/route_monthly/rows", params={**params, "format": "arrow"})
    assert by_accept.headers["content-type"] == "application/vnd.apache.arrow.stream"
    table = pa.ipc.open_stream(by_accept.content).read_all()
    assert table.column_names == ["origin", "dest", "flights", "mean_arr_delay"]
    assert table.to_pylist() == as_json["rows"]
    assert by_param.content == by_accept.content
    assert by_accept.headers["x-table-version"] == str(as_json["version"])


@pytest.mark.parametrize(
    ("path", "params", "status", "field", "words"),
    [
        ("/v1/tables/nope/rows", {}, 404, "name", "no gold table named 'nope'"),
        ("/v1/tables/flights/rows", {}, 404, "name", "no gold table"),  # silver is never served
        ("/v1/tables/route_monthly/rows", {"filter": "nope:eq:1"}, 422, "filter", "unknown column 'nope'"),
        ("/v1/tables/route_monthly/rows", {"filter": "flights:eq:many"}, 422, "filter", "not a valid int64"),
        ("/v1/tables/route_monthly/rows", {"filter": "flights:like:1"}, 422, "filter", "unknown op 'like'"),
        ("/v1/tables/route_monthly/rows", {"filter": "flights"}, 422, "filter", "expected column:op:value"),
        ("/v1/tables/route_monthly/rows", {"columns": "origin,secret"}, 422, "columns", "unknown column 'secret'"),
        ("/v1/tables/route_monthly/rows", {"order_by": "-nope"}, 422, "order_by", "unknown column 'nope'"),
        ("/v1/tables/route_monthly/rows", {"limit": 0}, 422, "limit", "greater than or equal to 1"),
        ("/v1/tables/route_monthly/rows", {"version": 999}, 422, "version", "does not exist"),
        ("/v1/tables/route_monthly/rows", {"cursor": "garbage!"}, 422, "cursor", "not a cursor"),
        ("/v1/tables/route_monthly/rows", {"format": "xml"}, 422, "format", "format"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(
    serve_app: ServeApp, path: str, params: dict[str, Any], status: int, field: str, words: str
) -> None:
    with serve_app.client() as client:
        response = client.get(path, params=params)
    assert response.status_code == status, response.text
    assert response.json()["field"] == field
    assert words in response.json()["error"]


def test_cursor_of_another_query_is_refused(serve_app: ServeApp) -> None:
    with serve_app.client() as client:
        cursor = client.get("/v1/tables/route_monthly/rows", params={"limit": 1}).json()["next_cursor"]
        response = client.get("/v1/tables/route_monthly/rows", params={"limit": 1, "cursor": cursor, "order_by": "-flights"})
    assert response.status_code == 422
    assert response.json() == {"error": "the cursor belongs to another query (table, filters, columns or order changed)", "field": "cursor"}


def test_bearer_token_required_except_health_and_docs(serve_app: ServeApp) -> None:
    with httpx.Client(base_url=serve_app.base_url, timeout=60) as anonymous:
        assert anonymous.get("/v1/tables").status_code == 401
        wrong = anonymous.get("/v1/tables", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["field"] == "Authorization"
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        assert anonymous.get("/docs").status_code == 200
        spec = anonymous.get("/openapi.json").json()
    assert "/v1/tables/{name}/rows" in spec["paths"]


def test_body_over_the_limit_is_413(serve_app: ServeApp) -> None:
    limit = serve_app.lake.settings.serve.max_body_bytes
    with serve_app.client() as client:  # the limit holds before routing: any path, any method
        declared = client.request("POST", "/v1/tables", content=b"x" * (limit + 1))

        def chunks() -> Any:  # no Content-Length: counted as it streams
            for _ in range(limit // 65536 + 2):
                yield b"y" * 65536

        streamed = client.request("POST", "/v1/tables", content=chunks())
    assert declared.status_code == 413 and declared.json()["field"] == "body"
    assert streamed.status_code == 413


def test_overload_sheds_with_503_and_recovers(serve_app: ServeApp) -> None:
    """Far more concurrent heavy queries than max_ongoing + max_queued: the excess gets 503, never a crash."""

    async def burst() -> list[int]:
        headers = {"Authorization": f"Bearer {serve_app.token}"}
        limits = httpx.Limits(max_connections=300)
        async with httpx.AsyncClient(base_url=serve_app.base_url, headers=headers, timeout=120, limits=limits) as client:
            params = {"limit": 10000, "order_by": "-mean_dep_delay"}
            calls = [client.get("/v1/tables/airport_hourly_traffic/rows", params=params) for _ in range(250)]
            return [r.status_code for r in await asyncio.gather(*calls)]

    statuses = asyncio.run(burst())
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert statuses.count(503) > 0 and statuses.count(200) >= 8
    with serve_app.client() as client:
        assert client.get("/v1/tables/route_monthly/rows", params={"limit": 1}).status_code == 200


def test_query_past_the_timeout_is_504(serve_app: ServeApp) -> None:
    """The data app itself (no Serve) under uvicorn, with a query timeout nothing can meet."""
    import threading
    import time

    import uvicorn

    from serve.data_app import GoldCatalog, build_data_api
    from serve.deploy import free_port

    lake = serve_app.lake.settings
    hasty = lake.model_copy(update={"serve": lake.serve.model_copy(update={"query_timeout_s": 1e-9})})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_data_api(hasty, GoldCatalog(hasty)), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            response = client.get("/v1/tables/route_monthly/rows")
            healthy = client.get("/healthz")
    finally:
        server.should_exit = True
        thread.join(10)
    assert response.status_code == 504
    assert "ran past" in response.json()["error"]
    assert healthy.status_code == 200
