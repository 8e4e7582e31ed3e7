"""Fuzzing both apps over real HTTP: schemathesis from their /openapi.json, plus hand-written
malformed bodies and SQL-injection strings. Nothing may answer 5xx, and the server stays up with
the lake untouched.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from lake import io
from tests.e2e.conftest import ServeApp

pytestmark = [pytest.mark.e2e, pytest.mark.ray]
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)


def fuzz_operations(app: ServeApp, prefix: str) -> int:
    """Every operation of the app's OpenAPI schema, with schemathesis-generated requests (valid
    and invalid, per the schema): none may answer 5xx. Returns how many operations were fuzzed."""
    schema = schemathesis.openapi.from_url(f"{app.base_url}{prefix}/openapi.json")
    headers = {"Authorization": f"Bearer {app.token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:

        @given(case=operation.as_strategy())
        @FUZZ
        def no_server_error(case: Any) -> None:
            response = case.call(base_url=f"{app.base_url}{prefix}", headers=headers)
            assert response.status_code < 500, (case.method, case.path, case.query, case.body, response.text[:500])

        no_server_error()
    return len(operations)


def test_data_api_never_answers_5xx(serve_app: ServeApp) -> None:
    assert fuzz_operations(serve_app, "") == 4  # healthz, tables, one table, rows


def test_model_api_never_answers_5xx(serve_app: ServeApp) -> None:
    assert fuzz_operations(serve_app, "/v1/models") == 2  # healthz, predict


INJECTIONS = [
    "carrier:eq:' OR '1'='1",
    "carrier:eq:UA'; DROP TABLE gold.carrier_daily_performance; --",
    "carrier:in:UA') OR 1=1 --,ZZ",
    "carrier:eq:\" OR \"\"=\"",
    "carrier:eq:UA\x00",
    "carrier:eq:" + "A" * 5000,
    "flights:gt:1 OR 1=1",
    "flights:gt:1; DELETE FROM gold.carrier_daily_performance",
    "flight_date:ge:2013-12-01' OR '1'='1",
    "carrier) OR 1=1 --:eq:UA",
    "1=1:eq:1",
    "flights:eq:99999999999999999999999",
    "on_time_rate:gt:NaN",
    "on_time_rate:lt:inf",
    "carrier:null:maybe",
]


@pytest.mark.parametrize("injection", INJECTIONS)
def test_sql_injection_in_filters_is_data_not_code(serve_app: ServeApp, injection: str) -> None:
    with serve_app.client() as client:
        response = client.get("/v1/tables/carrier_daily_performance/rows", params={"filter": injection})
    assert response.status_code in (200, 422), response.text
    if response.status_code == 200:
        assert response.json()["rows"] == []  # compared as a value, it matches nothing
    else:
        assert response.json()["field"] == "filter"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/tables/carrier_daily_performance;DROP TABLE x/rows", {}),
        ("/v1/tables/..%2F..%2Fsilver%2Fflights/rows", {}),
        ("/v1/tables/gold.carrier_daily_performance/rows", {}),
        ("/v1/tables/carrier_daily_performance/rows", {"columns": "carrier; DROP TABLE x"}),
        ("/v1/tables/carrier_daily_performance/rows", {"columns": "*"}),
        ("/v1/tables/carrier_daily_performance/rows", {"order_by": "flights DESC; DROP TABLE x"}),
        ("/v1/tables/carrier_daily_performance/rows", {"order_by": "1"}),
        ("/v1/tables/carrier_daily_performance/rows", {"version": "1 OR 1=1"}),
        ("/v1/tables/carrier_daily_performance/rows", {"limit": "10; DROP"}),
        ("/v1/tables/carrier_daily_performance/rows", {"cursor": "eyJ2IjotMSwibyI6LTEsInEiOiIifQ"}),
    ],
)
def test_names_from_the_request_never_reach_storage(serve_app: ServeApp, path: str, params: dict[str, str]) -> None:
    with serve_app.client() as client:
        response = client.get(path, params=params)
    assert response.status_code in (404, 422), response.text
    assert response.json()["error"]


MALFORMED = [
    b"{",
    b"null",
    b"42",
    b'"a string"',
    b"\xff\xfe\x00garbage",
    b'{"carrier": "UA", "flight": 1e999, "origin": "EWR", "dest": "IAH", "sched_dep_utc": "2013-12-03T10:00:00"}',
    b'{"carrier": "UA", "flight": NaN, "origin": "EWR", "dest": "IAH", "sched_dep_utc": "2013-12-03T10:00:00"}',
    b'{"carrier": {"$ne": null}, "flight": 1, "origin": "EWR", "dest": "IAH", "sched_dep_utc": "2013-12-03T10:00:00"}',
    b'{"carrier": "UA", "flight": 1, "origin": "EWR", "dest": "IAH", "sched_dep_utc": "2013-12-03T10:00:00+99:00"}',
    b"[" * 20000 + b"]" * 20000,
    b'[{"carrier": "UA"}, 7, null]',
]


@pytest.mark.parametrize("body", MALFORMED, ids=[f"malformed-{i}" for i in range(len(MALFORMED))])
def test_malformed_predict_bodies_are_4xx(serve_app: ServeApp, body: bytes) -> None:
    with serve_app.client() as client:
        response = client.post("/v1/models/flight-delay/predict", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text[:500]


def test_server_up_and_lake_untouched_after_fuzzing(serve_app: ServeApp, spark: Any) -> None:
    """Runs last in this module: both apps answer and gold kept its version and rows."""
    with httpx.Client(base_url=serve_app.base_url, timeout=60) as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/v1/models/healthz").status_code == 200
    lake = serve_app.lake.settings
    with serve_app.client() as client:
        entry = client.get("/v1/tables/carrier_daily_performance").json()
    assert entry["version"] == io.version(spark, lake, "gold.carrier_daily_performance")
    assert io.read(spark, lake, "gold.carrier_daily_performance").count() > 0
