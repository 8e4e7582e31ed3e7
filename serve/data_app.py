"""The data endpoint: gold tables over HTTP, read with delta-rs and Arrow (no JVM, no SQL).

GET /v1/tables                  the catalog: name, description, owner, keys, schema, version, freshness
GET /v1/tables/{name}           one table's entry
GET /v1/tables/{name}/rows      rows, with typed filters on the table's columns, column selection,
                                ordering, limit, cursor pagination, time travel; JSON or Arrow IPC
GET /healthz                    200 when the replica answers

Only gold tables declared in the registry (`lake.tables`) are served. A request never becomes
query text: filters are parsed into pyarrow compute expressions over columns checked against the
table's schema, with values converted to the column's type. Pages come from a total order (the
requested order, then the table's keys, then every other column) over one pinned Delta version,
so a cursor walks a stable snapshot even while the table is being rewritten.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import decimal
import hashlib
import io
import json
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from ray import serve

from lake.settings import ServeSettings, Settings
from serve.common import ApiError, RequestMetrics, counter, instrument, make_app

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as ds
    from ray.serve import Application

ARROW_STREAM = "application/vnd.apache.arrow.stream"
OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "null")
MAX_FILTERS = 20
MAX_IN_VALUES = 1000
_PINNED_CACHE = 16  # Delta snapshots kept per replica for time travel and cursors (immutable)


@dataclass(frozen=True)
class Filter:
    column: str
    op: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class RowsQuery:
    """A validated rows request: every name checked against the table, every value typed."""

    table: str
    version: int
    columns: tuple[str, ...]
    filters: tuple[Filter, ...]
    order: tuple[tuple[str, str], ...]  # (column, "ascending" | "descending")
    offset: int
    limit: int

    def fingerprint(self) -> str:
        """What a cursor belongs to: the same table, filters, columns and order (not the page)."""
        shape = [self.table, list(self.columns), [[f.column, f.op, [str(v) for v in f.values]] for f in self.filters], list(self.order)]
        return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:16]


@dataclass
class Page:
    table: pa.Table
    version: int
    next_cursor: str | None


def encode_cursor(version: int, offset: int, fingerprint: str) -> str:
    raw = json.dumps({"v": version, "o": offset, "q": fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        version, offset, fingerprint = data["v"], data["o"], data["q"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise ApiError(422, "not a cursor this API issued (pass next_cursor back unchanged)", "cursor") from exc
    if not (isinstance(version, int) and isinstance(offset, int) and isinstance(fingerprint, str)) or version < 0 or offset < 0:
        raise ApiError(422, "not a cursor this API issued (pass next_cursor back unchanged)", "cursor")
    return version, offset, fingerprint


def parse_value(raw: str, kind: pa.DataType, column: str) -> Any:
    """`raw` as a value of the column's Arrow type, or a 422 naming the column."""
    import pyarrow as pa

    where = f"filter on '{column}'"
    try:
        if pa.types.is_boolean(kind):
            if raw.lower() not in ("true", "false"):
                raise ValueError("expected true or false")
            return raw.lower() == "true"
        if pa.types.is_integer(kind):
            value = int(raw)
            info = (-(2 ** (kind.bit_width - 1)), 2 ** (kind.bit_width - 1) - 1) if pa.types.is_signed_integer(kind) else (0, 2**kind.bit_width - 1)
            if not info[0] <= value <= info[1]:
                raise ValueError(f"out of range for {kind}")
            return value
        if pa.types.is_floating(kind):
            number = float(raw)
            if not math.isfinite(number):
                raise ValueError("expected a finite number")
            return number
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return raw
        if pa.types.is_date(kind):
            return dt.date.fromisoformat(raw)
        if pa.types.is_timestamp(kind):
            moment = dt.datetime.fromisoformat(raw)
            if kind.tz and moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)  # a naive time on a UTC column means UTC
            if not kind.tz and moment.tzinfo is not None:
                moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
            pa.scalar(moment, type=kind)  # representable (UTC may push year 1 or 9999 out of range)
            return moment
    except (ValueError, OverflowError, pa.ArrowException) as exc:
        raise ApiError(422, f"{where}: {raw!r} is not a valid {kind} value ({exc})", "filter") from None
    raise ApiError(422, f"{where}: columns of type {kind} cannot be filtered", "filter")


def filterable(kind: pa.DataType) -> bool:
    import pyarrow as pa

    checks = (pa.types.is_boolean, pa.types.is_integer, pa.types.is_floating, pa.types.is_string,
              pa.types.is_large_string, pa.types.is_date, pa.types.is_timestamp)  # fmt: skip
    return any(check(kind) for check in checks)


def to_expression(f: Filter, kind: pa.DataType) -> ds.Expression:
    import pyarrow as pa
    import pyarrow.compute as pc

    field = pc.field(f.column)
    if f.op == "null":
        return field.is_null() if f.values[0] else field.is_valid()
    scalars = [pa.scalar(v, type=kind) for v in f.values]
    if f.op == "in":
        return field.isin(pa.array(f.values, type=kind))
    one = scalars[0]
    return {
        "eq": field == one,
        "ne": field != one,
        "lt": field < one,
        "le": field <= one,
        "gt": field > one,
        "ge": field >= one,
    }[f.op]


def jsonable(value: Any) -> Any:
    """Arrow's Python values as JSON: ISO dates and times, NaN as null, decimals as strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


class GoldCatalog:
    """Reads gold tables with delta-rs: the catalog entries and validated row queries."""

    def __init__(self, settings: Settings) -> None:
        from lake import tables

        self.settings = settings
        self.declared = {t.name: t for t in tables.registry().values() if t.layer == "gold"}
        self._pinned: OrderedDict[tuple[str, int], Any] = OrderedDict()

    def _declared(self, name: str) -> Any:
        if name not in self.declared:
            raise ApiError(404, f"no gold table named {name!r}; known: {', '.join(sorted(self.declared))}", "name")
        return self.declared[name]

    def _storage_options(self) -> dict[str, str] | None:
        return None  # local paths; object-store credentials come from the environment (AWS_*)

    def _open(self, name: str, version: int | None = None) -> Any:
        """The Delta table at `version` (latest when None); 404 when the table has no data yet."""
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError, TableNotFoundError

        self._declared(name)
        path = self.settings.table_path("gold", name)
        if version is not None and (name, version) in self._pinned:
            self._pinned.move_to_end((name, version))
            return self._pinned[(name, version)]
        try:
            table = DeltaTable(path, storage_options=self._storage_options())
        except TableNotFoundError:
            raise ApiError(404, f"gold table {name!r} has no data yet (run `lakehouse run`)", "name") from None
        if version is not None:
            latest = table.version()
            if version > latest:
                raise ApiError(422, f"version {version} of {name!r} does not exist; the latest is {latest}", "version")
            try:
                table.load_as_version(version)
            except DeltaError as exc:
                raise ApiError(422, f"version {version} of {name!r} cannot be read: {exc}", "version") from None
            self._pinned[(name, version)] = table
            while len(self._pinned) > _PINNED_CACHE:
                self._pinned.popitem(last=False)
        return table

    def entries(self) -> list[dict[str, Any]]:
        return [self.entry(name) for name in sorted(self.declared)]

    def entry(self, name: str) -> dict[str, Any]:
        declared = self._declared(name)
        base = {
            "name": name,
            "fqn": declared.fqn,
            "description": declared.description,
            "owner": declared.owner,
            "keys": list(declared.keys),
        }
        try:
            table = self._open(name)
        except ApiError:
            return {**base, "schema": None, "version": None, "freshness": None}
        schema = self._schema(table)
        last = table.history(1)[0]
        committed = dt.datetime.fromtimestamp(last["timestamp"] / 1000, tz=dt.UTC)
        return {
            **base,
            "schema": [
                {"name": f.name, "type": str(f.type), "nullable": f.nullable, "filterable": filterable(f.type)}
                for f in schema
            ],
            "version": table.version(),
            "freshness": {
                "last_commit": committed.isoformat(),
                "age_seconds": round((dt.datetime.now(dt.UTC) - committed).total_seconds(), 3),
                "operation": last.get("operation"),
            },
        }

    @staticmethod
    def _schema(table: Any) -> pa.Schema:
        import pyarrow as pa

        return pa.schema(table.schema().to_arrow())

    def parse(
        self,
        name: str,
        filters: list[str],
        columns: str | None,
        order_by: str | None,
        limit: int,
        cursor: str | None,
        version: int | None,
    ) -> RowsQuery:
        """Check every name against the table's schema and type every value; 404/422 otherwise."""
        declared = self._declared(name)
        offset = 0
        cursor_fingerprint = None
        if cursor is not None:
            cursor_version, offset, cursor_fingerprint = decode_cursor(cursor)
            if version is not None and version != cursor_version:
                raise ApiError(422, f"version {version} differs from the cursor's version {cursor_version}; drop one", "version")
            version = cursor_version
        table = self._open(name, version)
        pinned = table.version()
        schema = self._schema(table)
        types = {f.name: f.type for f in schema}
        known = ", ".join(types)

        def column(raw: str, field: str) -> str:
            if raw not in types:
                raise ApiError(422, f"{field}: unknown column {raw!r} of {name!r}; columns: {known}", field)
            return raw

        selected = tuple(column(c.strip(), "columns") for c in columns.split(",")) if columns else tuple(types)
        if len(set(selected)) != len(selected):
            raise ApiError(422, "columns: a column is named twice", "columns")
        if len(filters) > MAX_FILTERS:
            raise ApiError(422, f"filter: at most {MAX_FILTERS} filters", "filter")
        parsed = []
        for raw in filters:
            parts = raw.split(":", 2)
            if len(parts) != 3:
                raise ApiError(422, f"filter {raw!r}: expected column:op:value, op one of {', '.join(OPS)}", "filter")
            col, op, value = parts
            col = column(col, "filter")
            if op not in OPS:
                raise ApiError(422, f"filter {raw!r}: unknown op {op!r}; ops: {', '.join(OPS)}", "filter")
            if op == "null":
                if value not in ("true", "false"):
                    raise ApiError(422, f"filter {raw!r}: null takes true or false", "filter")
                parsed.append(Filter(col, op, (value == "true",)))
                continue
            if not filterable(types[col]):
                raise ApiError(422, f"filter on '{col}': columns of type {types[col]} cannot be filtered", "filter")
            raws = value.split(",") if op == "in" else [value]
            if len(raws) > MAX_IN_VALUES:
                raise ApiError(422, f"filter on '{col}': at most {MAX_IN_VALUES} values for in", "filter")
            parsed.append(Filter(col, op, tuple(parse_value(v, types[col], col) for v in raws)))
        order: list[tuple[str, str]] = []
        for raw in (order_by.split(",") if order_by else []):
            item = raw.strip()
            direction = "descending" if item.startswith("-") else "ascending"
            col = column(item.lstrip("-+"), "order_by")
            if any(c == col for c, _ in order):
                raise ApiError(422, f"order_by: column {col!r} named twice", "order_by")
            order.append((col, direction))
        # A total order: then the keys, then every other column, so pages never overlap or skip.
        for col in (*declared.keys, *types):
            if col in types and all(c != col for c, _ in order):
                order.append((col, "ascending"))
        query = RowsQuery(name, pinned, selected, tuple(parsed), tuple(order), offset, limit)
        if cursor_fingerprint is not None and cursor_fingerprint != query.fingerprint():
            raise ApiError(422, "the cursor belongs to another query (table, filters, columns or order changed)", "cursor")
        return query

    def rows(self, query: RowsQuery) -> Page:
        """Scan with the filters pushed into the dataset, sort, slice one page (+1 row to know if more)."""
        import pyarrow.compute as pc

        table = self._open(query.table, query.version)
        dataset = table.to_pyarrow_dataset()
        types = {f.name: f.type for f in dataset.schema}
        expression = None
        for f in query.filters:
            part = to_expression(f, types[f.column])
            expression = part if expression is None else expression & part
        needed = list(dict.fromkeys([*query.columns, *(c for c, _ in query.order)]))
        scanned = dataset.to_table(columns=needed, filter=expression)
        if scanned.num_rows:
            keys = [(column, direction, "at_end") for column, direction in query.order]  # nulls last
            indices = pc.sort_indices(scanned, sort_keys=keys)
            window = indices.slice(query.offset, query.limit + 1)
            page = scanned.take(window)
        else:
            page = scanned
        more = page.num_rows > query.limit
        page = page.slice(0, query.limit).select(list(query.columns))
        cursor = encode_cursor(query.version, query.offset + query.limit, query.fingerprint()) if more else None
        return Page(page, query.version, cursor)


def arrow_bytes(table: pa.Table) -> bytes:
    import pyarrow as pa

    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def build_data_api(
    settings: Settings, catalog: GoldCatalog, metrics: RequestMetrics | None = None, rows_returned: Any = None
) -> FastAPI:
    """The FastAPI app of the data endpoint (also usable outside Serve, e.g. under plain uvicorn)."""
    serve_settings: ServeSettings = settings.serve
    app = make_app(
        "Lakehouse data API",
        "Gold tables of the lakehouse, read through delta-rs and Arrow. Filters: "
        "`filter=column:op:value` (repeatable; ops eq, ne, lt, le, gt, ge, in (comma-separated values), "
        "null (true/false)).",
        serve_settings,
        open_paths=("/healthz",),
    )
    if metrics is not None:
        instrument(app, metrics)

    async def bounded(work: Any, *args: Any) -> Any:
        """Run blocking Arrow work in a thread; 504 when it runs past the query timeout."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(work, *args), timeout=serve_settings.query_timeout_s)
        except TimeoutError:
            raise ApiError(504, f"the query ran past {serve_settings.query_timeout_s}s; narrow it with filters or a smaller limit", None) from None

    @app.get("/healthz", summary="liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/tables", summary="the gold tables: description, owner, schema, version, freshness")
    async def list_tables() -> dict[str, Any]:
        return {"tables": await bounded(catalog.entries)}

    @app.get("/v1/tables/{name}", summary="one gold table's catalog entry")
    async def get_table(name: str) -> dict[str, Any]:
        return dict(await bounded(catalog.entry, name))

    @app.get(
        "/v1/tables/{name}/rows",
        summary="rows of a gold table",
        responses={200: {"content": {"application/json": {}, ARROW_STREAM: {}}}},
    )
    async def get_rows(
        request: Request,
        name: str,
        filter: list[str] = Query(default=[], description="column:op:value; repeatable; ANDed"),
        columns: str | None = Query(default=None, description="comma-separated columns to return (default: all)"),
        order_by: str | None = Query(default=None, description="comma-separated columns, `-col` for descending; then the keys"),
        limit: int = Query(default=serve_settings.default_page_rows, ge=1, le=serve_settings.max_page_rows),
        cursor: str | None = Query(default=None, max_length=512, description="next_cursor of the previous page"),
        version: int | None = Query(default=None, ge=0, description="Delta version to read (time travel)"),
        format: Literal["json", "arrow"] | None = Query(default=None, description="json (default) or arrow; or use Accept"),
    ) -> Response:
        query = catalog.parse(name, filter, columns, order_by, limit, cursor, version)
        started = time.perf_counter()
        page: Page = await bounded(catalog.rows, query)
        if rows_returned is not None and page.table.num_rows:  # Ray counters refuse an increment of 0
            rows_returned.inc(page.table.num_rows, tags={"table": name})
        headers = {"X-Table-Version": str(page.version)}
        if page.next_cursor:
            headers["X-Next-Cursor"] = page.next_cursor
        wants_arrow = format == "arrow" or (format is None and ARROW_STREAM in request.headers.get("accept", ""))
        if wants_arrow:
            return Response(arrow_bytes(page.table), media_type=ARROW_STREAM, headers=headers)
        body = {
            "table": name,
            "version": page.version,
            "columns": list(query.columns),
            "rows": [jsonable(r) for r in page.table.to_pylist()],
            "count": page.table.num_rows,
            "next_cursor": page.next_cursor,
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 3),
        }
        return JSONResponse(body, headers=headers)

    return app


@serve.deployment
@serve.ingress()
class DataAPI:
    """One replica of the data endpoint; settings come in through the constructor."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.catalog = GoldCatalog(settings)
        self.metrics = RequestMetrics.create("data")
        self.rows_returned = counter("lakehouse_serve_rows_returned", "Rows returned by the data endpoint", ("table",))

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_data_api(self.settings, self.catalog, self.metrics, self.rows_returned)


def build(args: dict[str, Any]) -> Application:
    """The application builder named in serve/config.yaml (`serve.data_app:build`).

    Settings are built where the application is built, from the config files and the
    environment of the Serve processes (LAKEHOUSE_ENV, LAKEHOUSE_* overrides).
    """
    from lake.settings import load_settings

    if args:
        raise ValueError(f"serve.data_app takes no args; got {', '.join(sorted(args))}")
    return DataAPI.bind(load_settings())  # type: ignore[attr-defined]
