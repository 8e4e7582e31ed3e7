"""The model endpoint: POST /v1/models/flight-delay/predict, batched, hot-swapped, logged to Delta.

A request carries one flight or a list (carrier, flight number, origin, destination, scheduled
departure in UTC, tail number). The replica fetches the flights' online features itself, scores
them with the champion XGBoost booster (`@serve.batch` gathers rows across concurrent requests
into one `inplace_predict`), and answers the delay probability, the model version, the feature
values used and which of them were missing. A background task polls the model source and swaps a
newly promoted champion in by replacing one reference: each request is scored by the model its
features were fetched for, even when a swap lands meanwhile, so no request fails. Every
prediction is buffered and appended in batches to a Delta inference table with delta-rs (no JVM).

Dependencies come in through the constructor (DESIGN.md, "Serve"): a `ModelSource` (where the
champion lives) and a `FeatureClient` (online features). `build` wires them from the app's args in
serve/config.yaml: by default the champion of the model registry (`ml.models`) with the Feast
FeatureService it was trained on, read from the online store (`FeastFeatureClient`);
`model_source: files` pairs a folder of boosters with features computed from the gold tables
(`GoldFeatureClient`; tests, benchmarks, demos).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from fastapi import Body, FastAPI
from pydantic import BaseModel, ConfigDict, Field, field_validator
from ray import serve

from lake.settings import Settings, resolve_path
from serve.common import ApiError, RequestMetrics, counter, instrument, make_app

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import xgboost
    from feast import FeatureStore
    from ray.serve import Application

log = logging.getLogger(__name__)
MODEL_NAME = "flight-delay"
MAX_FLIGHTS = 1000  # per request; more is a 422 naming the body
# Rows per model call. Ray reports a histogram's _sum from bucket midpoints: half-integer bounds
# keep 1 and 2 exact and the dashboard's mean batch size close.
BATCH_SIZE_BOUNDARIES = [0.5, 1.5, 2.5, 4.5, 8.5, 16.5, 32.5, 64.5, 128.5, 256.5, 512.5, 1024.5]
CALENDAR_CACHE = 20_000  # (origin, local day, local hour) entries per replica
REFUSED_RETRY_S = 30.0  # a champion that could not be loaded is tried again this often, not every poll


class Flight(BaseModel):
    """One scheduled flight, as known at scheduling time."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    carrier: Annotated[str, Field(pattern=r"^[A-Z0-9]{2}$", description="IATA carrier code, e.g. UA")]
    flight: Annotated[int, Field(ge=1, le=9999, description="flight number")]
    origin: Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="origin airport (FAA), e.g. EWR")]
    dest: Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="destination airport (FAA)")]
    sched_dep_utc: Annotated[dt.datetime, Field(description="scheduled departure; naive times are UTC")]
    tailnum: Annotated[str | None, Field(default=None, max_length=10, pattern=r"^[A-Z0-9]*$")] = None

    @field_validator("sched_dep_utc")
    @classmethod
    def _plausible(cls, value: dt.datetime) -> dt.datetime:
        if not 1900 <= value.year <= 2200:
            raise ValueError("year must be between 1900 and 2200")
        return value

    def departure(self) -> dt.datetime:
        moment = self.sched_dep_utc
        return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


class Prediction(BaseModel):
    delay_probability: float
    model_version: str
    features: dict[str, float | None]  # the model's inputs, in its order; null = missing (NaN to the model)
    missing_features: list[str]


class Predictions(BaseModel):
    model: str
    predictions: list[Prediction]


@dataclass(frozen=True)
class LoadedModel:
    """A booster ready to score, with what scoring needs to know about it."""

    version: str
    booster: Any  # xgboost.Booster
    feature_names: tuple[str, ...]  # the input order it was trained with
    iteration_range: tuple[int, int] = (0, 0)  # trees used; (0, 0) = all (no early stopping)
    feature_service: str | None = None  # the Feast FeatureService it was trained on, when it has one


class FeatureInputError(ValueError):
    """A flight whose features cannot be looked up (e.g. an unknown airport): a 422 naming the field."""

    def __init__(self, message: str, index: int, field: str) -> None:
        super().__init__(message)
        self.index, self.field = index, field


class FeatureClient(Protocol):
    """Online features for flights, one dict per flight (a missing value is None)."""

    def check(self, model: LoadedModel) -> None:
        """Raise (RuntimeError) when this client cannot provide every input of `model`."""
        ...

    def online_features(self, flights: list[Flight], model: LoadedModel | None = None) -> list[dict[str, float | None]]: ...


class ModelSource(Protocol):
    """Where the champion lives: a cheap poll for its version, and a loader."""

    def champion_version(self) -> str | None: ...

    def load_model(self, version: str) -> LoadedModel: ...


def _feature_names(version: str, booster: xgboost.Booster) -> tuple[str, ...]:
    names = tuple(booster.feature_names or ())
    if not names:
        raise RuntimeError(f"model {version!r} has no feature names; train it on a DMatrix with feature_names")
    return names


class FileModelSource:
    """A folder of boosters: `<version>.ubj` (or .json) files and a `CHAMPION` file naming one.

    Promoting is writing CHAMPION (atomically, by rename); replicas pick it up on their next poll.
    """

    def __init__(self, folder: str) -> None:
        self.folder = Path(resolve_path(folder))

    def champion_version(self) -> str | None:
        try:
            return (self.folder / "CHAMPION").read_text().strip() or None
        except FileNotFoundError:
            return None

    def load(self, version: str) -> xgboost.Booster:
        import xgboost

        for suffix in (".ubj", ".json"):
            path = self.folder / f"{version}{suffix}"
            if path.is_file():
                return xgboost.Booster(model_file=str(path))
        raise FileNotFoundError(f"{self.folder}: no model file for version {version!r}")

    def load_model(self, version: str) -> LoadedModel:
        booster = self.load(version)
        return LoadedModel(version, booster, _feature_names(version, booster))

    def promote(self, version: str) -> None:
        tmp = self.folder / f".CHAMPION.{uuid.uuid4().hex}"
        tmp.write_text(version)
        tmp.replace(self.folder / "CHAMPION")


class RegistryModelSource:
    """The champion of the model registry (`ray_jobs.registry`): versions are its integer model
    versions. Its models are trained on a Feast FeatureService, so it pairs with `FeastFeatureClient`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def champion_version(self) -> str | None:
        from ray_jobs import registry

        record = registry.champion(self.settings)
        return str(record.model_version) if record else None

    def load_model(self, version: str) -> LoadedModel:
        from ray_jobs import registry

        record = registry.get(self.settings, int(version))
        booster = registry.load_model(record)
        names = _feature_names(version, booster)
        # train.py records the input order next to the booster; a mismatch means a corrupt artifact.
        trained = tuple(record.config.get("features") or names)
        if names != trained:
            raise RuntimeError(f"model {version}: the booster's feature names differ from the registered features")
        # Early stopping keeps trees past the best round: score with the trees batch scoring uses.
        best = int(record.config.get("best_iteration", booster.num_boosted_rounds() - 1))
        return LoadedModel(version, booster, names, (0, best + 1), record.feature_service)


class FeastFeatureClient:
    """Online features from the Feast online store (features/store.py: SQLite under `<lake>/_feast/`
    locally, Redis in prod), for the FeatureService the model was trained on.

    Each flight's entity keys come from the request: carrier, route `ORIGIN-DEST`, origin,
    carrier_route `CARRIER:ORIGIN-DEST` and flight_id `yyyyMMdd-CARRIER-FLIGHT-ORIGIN` (the formats
    of ray_jobs/features.py and lake/silver/flights.py), where the date is the local day of the
    departure at the origin, like every feature's day. The online store keeps one row per key,
    the latest loaded; a row is used only when the point-in-time rule of training's join holds for
    the flight's day D (its event time within [D - view TTL, D], D at 00:00 UTC), so a row
    written after D (which counts D's own outcomes) never reaches the model. Calendar features of
    a flight without its flight_features row are computed from the request with the features job's
    own function; the rest of that row stays missing (NaN, which XGBoost routes by its learned
    default).
    """

    # flight_features columns that follow from the departure time and origin alone.
    CALENDAR = ("dep_hour", "weekday", "month", "is_holiday", "days_to_holiday")

    def __init__(self, settings: Settings, refresh_s: float = 60.0) -> None:
        self.settings, self.refresh_s = settings, refresh_s
        self._lock = threading.Lock()  # one Feast store (one SQLite connection) per replica
        self._store: FeatureStore | None = None
        self._services: dict[str, tuple[Any, dict[str, float], tuple[str, ...]]] = {}
        self._zones: dict[str, str] = {}
        self._zones_read = -math.inf
        self._calendars: dict[tuple[str, dt.date, int], dict[str, float | None]] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Shipped to replicas without the store or caches (each replica opens its own)."""
        return {"settings": self.settings, "refresh_s": self.refresh_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["settings"], state["refresh_s"])  # type: ignore[misc]

    def _feast(self) -> FeatureStore:
        if self._store is None:
            from features.store import lake_store

            self._store = lake_store(self.settings)
        return self._store

    def check(self, model: LoadedModel) -> None:
        """Load the model's FeatureService from the Feast registry; refuse a model it cannot feed."""
        if not model.feature_service:
            raise RuntimeError(f"model {model.version!r} names no Feast FeatureService")
        with self._lock:
            store = self._feast()
            store.refresh_registry()  # a service registered after this replica started
            try:
                service = store.get_feature_service(model.feature_service)
            except Exception as exc:  # Feast's not-found error has no common base to catch
                raise RuntimeError(f"Feast has no FeatureService {model.feature_service!r}: {exc}") from None
            ttl: dict[str, float] = {}
            keys: set[str] = set()
            for projection in service.feature_view_projections:
                view = store.get_feature_view(projection.name)
                keys.update(column.name for column in view.entity_columns)
                for feature in projection.features:
                    ttl[feature.name] = view.ttl.total_seconds() if view.ttl else math.inf
        missing = sorted(set(model.feature_names) - set(ttl))
        if missing:
            raise RuntimeError(f"FeatureService {model.feature_service!r} lacks inputs of model {model.version!r}: {', '.join(missing)}")
        self._services[model.feature_service] = (service, ttl, tuple(sorted(keys)))

    def _time_zones(self, origins: set[str]) -> dict[str, str]:
        """Origin time zones from silver.airports, re-read (at most every refresh_s) for an unknown one."""
        if origins - set(self._zones) and time.monotonic() - self._zones_read > self.refresh_s:
            from deltalake import DeltaTable

            airports = DeltaTable(self.settings.table_path("silver", "airports")).to_pyarrow_table(columns=["faa", "time_zone"])
            self._zones = {r["faa"]: r["time_zone"] for r in airports.to_pylist() if r["time_zone"]}
            self._zones_read = time.monotonic()
        return self._zones

    def online_features(self, flights: list[Flight], model: LoadedModel | None = None) -> list[dict[str, float | None]]:
        from zoneinfo import ZoneInfo

        if model is None or model.feature_service not in self._services:
            raise RuntimeError("the model's FeatureService is not loaded: call check(model) first")
        service, ttl, keys = self._services[model.feature_service]
        zones = self._time_zones({f.origin for f in flights})
        local: list[dt.datetime] = []
        for i, f in enumerate(flights):
            if f.origin not in zones:
                raise FeatureInputError(f"unknown origin airport {f.origin!r} (no time zone in silver.airports)", i, "origin")
            local.append(f.departure().astimezone(ZoneInfo(zones[f.origin])))
        rows = [entity_row(f, when.date()) for f, when in zip(flights, local, strict=True)]
        with self._lock:
            found = self._feast().get_online_features(
                features=service, entity_rows=[{k: row[k] for k in keys} for row in rows]
            ).to_dict(include_event_timestamps=True)
        out: list[dict[str, float | None]] = []
        for i, when in enumerate(local):
            cutoff = dt.datetime.combine(when.date(), dt.time(), dt.UTC).timestamp()
            values: dict[str, float | None] = {}
            for name in model.feature_names:
                stamp = found[f"{name}__ts"][i]
                fresh = bool(stamp) and cutoff - ttl[name] <= stamp <= cutoff
                values[name] = _number(found[name][i]) if fresh else None
            if any(values.get(n, 0.0) is None for n in self.CALENDAR):
                computed = self._calendar(flights[i], when, rows[i], zones[flights[i].origin])
                values.update({n: v for n, v in computed.items() if n in values and values[n] is None})
            out.append(values)
        return out

    def _calendar(self, flight: Flight, local: dt.datetime, keys: dict[str, str], zone: str) -> dict[str, float | None]:
        """The calendar columns of flight_features, by the features job's own `flight_context`.

        They depend on the origin, local day and local hour only: cached on those (pandas costs
        tens of ms per call; most requests are for a few days and hours)."""
        key = (flight.origin, local.date(), local.hour)
        cached = self._calendars.get(key)
        if cached is None:
            import pandas as pd

            from ray_jobs.features import WEATHER_COLUMNS, flight_context

            batch = pd.DataFrame([keys]).assign(
                flight_date=[local.date()],
                sched_dep_utc=pd.to_datetime([flight.departure()], utc=True),
                tailnum=pd.Series([flight.tailnum], dtype="object"),
                distance=math.nan,
            )
            # No weather or plane rows: only what the request itself determines is computed.
            weather = pd.DataFrame({"origin": pd.Series(dtype="object"), "observed_at": pd.Series(dtype="datetime64[us, UTC]"),
                                    **{c: pd.Series(dtype="float64") for c in WEATHER_COLUMNS}})  # fmt: skip
            planes = pd.DataFrame({c: pd.Series(dtype="object") for c in ("tailnum", "aircraft_type", "engine_type")}).assign(
                year_built=pd.Series(dtype="float64"), seats=pd.Series(dtype="float64"), engines=pd.Series(dtype="float64")
            )
            row = _records(flight_context(batch, weather, planes, {flight.origin: zone}))[0]
            cached = {n: _number(row[n]) for n in self.CALENDAR}
            if len(self._calendars) >= CALENDAR_CACHE:
                self._calendars.clear()
            self._calendars[key] = cached
        return cached


def entity_row(flight: Flight, day: dt.date) -> dict[str, str]:
    """The Feast entity keys of a flight departing on local `day` (formats of ray_jobs/features.py
    `label_and_keys` and lake/silver/flights.py `flight_id`)."""
    route = f"{flight.origin}-{flight.dest}"
    return {
        "carrier": flight.carrier,
        "route": route,
        "origin": flight.origin,
        "carrier_route": f"{flight.carrier}:{route}",
        "flight_id": f"{day:%Y%m%d}-{flight.carrier}-{flight.flight}-{flight.origin}",
    }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in r.items()} for r in frame.to_dict(orient="records")]


class GoldFeatureClient:
    """Online features computed from the gold tables (delta-rs), as of before the flight's day.

    The gold tables are small (aggregates); they are held in memory and reloaded when their Delta
    version changes, checked at most every `refresh_s`.
    """

    FEATURES = (
        "dep_hour_utc",
        "dep_weekday",
        "dep_month",
        "route_distance",
        "route_on_time_rate",
        "route_mean_arr_delay",
        "carrier_on_time_rate_7d",
        "origin_scheduled_in_hour",
    )

    def __init__(self, settings: Settings, refresh_s: float = 60.0) -> None:
        self.settings, self.refresh_s = settings, refresh_s
        self._lock = threading.Lock()
        self._checked = 0.0
        self._versions: dict[str, int] = {}
        self._route: dict[tuple[str, str], list[tuple[dt.date, float | None, float | None, float | None]]] = {}
        self._carrier: dict[str, list[tuple[dt.date, float | None]]] = {}
        self._hourly: dict[tuple[str, dt.datetime], float] = {}

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.FEATURES

    def check(self, model: LoadedModel) -> None:
        # A model wanting features this client does not compute would score NaNs: refuse it.
        missing = sorted(set(model.feature_names) - set(self.FEATURES))
        if missing:
            raise RuntimeError(f"model {model.version!r} needs features the gold feature client lacks: {', '.join(missing)}")

    def __getstate__(self) -> dict[str, Any]:
        """Shipped to replicas without the lock or the cached tables (each replica loads its own)."""
        return {"settings": self.settings, "refresh_s": self.refresh_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["settings"], state["refresh_s"])  # type: ignore[misc]

    def _read(self, name: str) -> tuple[int, pa.Table] | None:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            table = DeltaTable(self.settings.table_path("gold", name))
        except TableNotFoundError:
            return None
        if self._versions.get(name) == table.version():
            return None
        return table.version(), table.to_pyarrow_table()

    def _refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._checked < self.refresh_s and self._versions:
                return
            self._checked = time.monotonic()
            if got := self._read("route_monthly"):
                self._versions["route_monthly"], t = got
                route: dict[tuple[str, str], list[Any]] = {}
                for r in t.select(["origin", "dest", "flight_month", "distance", "on_time_rate", "mean_arr_delay"]).to_pylist():
                    route.setdefault((r["origin"], r["dest"]), []).append(
                        (r["flight_month"], r["distance"], r["on_time_rate"], r["mean_arr_delay"])
                    )
                self._route = {k: sorted(v, key=lambda x: x[0]) for k, v in route.items()}
            if got := self._read("carrier_daily_performance"):
                self._versions["carrier_daily_performance"], t = got
                carrier: dict[str, list[Any]] = {}
                for r in t.select(["carrier", "flight_date", "on_time_rate"]).to_pylist():
                    carrier.setdefault(r["carrier"], []).append((r["flight_date"], r["on_time_rate"]))
                self._carrier = {k: sorted(v, key=lambda x: x[0]) for k, v in carrier.items()}
            if got := self._read("airport_hourly_traffic"):
                self._versions["airport_hourly_traffic"], t = got
                self._hourly = {
                    (r["origin"], r["hour_utc"].replace(tzinfo=None)): float(r["scheduled"])
                    for r in t.select(["origin", "hour_utc", "scheduled"]).to_pylist()
                }

    def online_features(self, flights: list[Flight], model: LoadedModel | None = None) -> list[dict[str, float | None]]:
        self._refresh()
        return [self.features_of(f.carrier, f.origin, f.dest, f.departure()) for f in flights]

    def features_of(self, carrier: str, origin: str, dest: str, departure: dt.datetime) -> dict[str, float | None]:
        """The feature row of one flight (also what training uses, so serving and training agree)."""
        day, month = departure.date(), departure.date().replace(day=1)
        route = self._route.get((origin, dest), [])
        distance = next((r[1] for r in reversed(route) if r[1] is not None), None)
        # The route's latest month before the flight's month: a month still running is not known yet.
        past = [r for r in route if r[0] < month]
        week = [rate for d, rate in self._carrier.get(carrier, []) if day - dt.timedelta(days=7) <= d < day and rate is not None]
        hour = departure.replace(minute=0, second=0, microsecond=0, tzinfo=None)
        return {
            "dep_hour_utc": float(departure.hour),
            "dep_weekday": float(departure.weekday()),
            "dep_month": float(departure.month),
            "route_distance": _number(distance),
            "route_on_time_rate": _number(past[-1][2]) if past else None,
            "route_mean_arr_delay": _number(past[-1][3]) if past else None,
            "carrier_on_time_rate_7d": sum(week) / len(week) if week else None,
            "origin_scheduled_in_hour": self._hourly.get((origin, hour)),
        }


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


class InferenceLog:
    """Predictions buffered in memory and appended in batches to a Delta table with delta-rs."""

    SCHEMA_FIELDS = (
        ("request_id", "string"),
        ("predicted_at", "timestamp"),
        ("request", "string"),
        ("features", "string"),
        ("delay_probability", "float64"),
        ("model_version", "string"),
        ("latency_ms", "float64"),
        ("replica", "string"),
    )

    def __init__(self, path: str, flush_rows: int, flush_s: float, pending_gauge: Any = None) -> None:
        self.path, self.flush_rows, self.flush_s = path, flush_rows, flush_s
        self._rows: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()
        self._gauge = pending_gauge  # ray gauge: rows waiting, so a table that cannot be written shows
        self.replica = f"{socket.gethostname()}:{os.getpid()}"

    @property
    def pending(self) -> int:
        return len(self._rows)

    def _report(self) -> None:
        if self._gauge is not None:
            self._gauge.set(self.pending)

    def add(self, rows: list[dict[str, Any]]) -> None:
        self._rows.extend(rows)
        self._report()

    def _schema(self) -> pa.Schema:
        import pyarrow as pa

        kinds = {"string": pa.string(), "timestamp": pa.timestamp("us", tz="UTC"), "float64": pa.float64()}
        return pa.schema([(name, kinds[kind]) for name, kind in self.SCHEMA_FIELDS])

    async def flush(self) -> int:
        """Append what is buffered; on failure the rows stay buffered for the next try."""
        import pyarrow as pa
        from deltalake import write_deltalake

        async with self._lock:
            rows, self._rows = self._rows, []
            if not rows:
                return 0
            try:
                batch = pa.Table.from_pylist(rows, schema=self._schema())
                await asyncio.to_thread(write_deltalake, self.path, batch, mode="append")
            except Exception:
                log.exception("inference log: append to %s failed; %d rows kept for the next try", self.path, len(rows))
                self._rows = rows + self._rows
                return 0
            finally:
                self._report()
            return len(rows)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.flush_s)
            if self.pending:
                await self.flush()
            self._report()  # Ray drops a gauge value not set again within two export intervals
        await self.flush()


@dataclass(frozen=True)
class ModelOptions:
    max_batch_size: int = 64
    batch_wait_timeout_s: float = 0.005
    champion_poll_s: float = 2.0
    inference_flush_rows: int = 1000
    inference_flush_s: float = 2.0


@dataclass
class ModelMetrics:
    """The model app's own metrics (`ray.serve.metrics`: Serve adds deployment, replica, application)."""

    predictions: Any  # counter, by model_version
    batch_size: Any  # histogram: rows per model call
    model_info: Any  # gauge = 1 for the version this replica serves, 0 for the one it replaced
    inference_pending: Any  # gauge: predictions waiting for the Delta inference table

    @classmethod
    def create(cls) -> ModelMetrics:
        from ray.serve import metrics

        from lake.metrics import SERVE_BATCH_SIZE, SERVE_MODEL_INFO

        return cls(
            predictions=counter("lakehouse_serve_predictions", "Flights scored", ("model_version",)),
            batch_size=metrics.Histogram(SERVE_BATCH_SIZE, "Rows per model call (@serve.batch)", boundaries=BATCH_SIZE_BOUNDARIES),
            model_info=metrics.Gauge(SERVE_MODEL_INFO, "The model version a replica serves (1)", tag_keys=("model_version",)),
            inference_pending=metrics.Gauge("lakehouse_serve_inference_log_pending", "Predictions not yet in the inference table"),
        )


def build_model_api(replica: FlightDelayModel) -> FastAPI:
    """The FastAPI app of the model endpoint, bound to one replica's state."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(replica.watch_champion(stop)), asyncio.create_task(replica.inference.run(stop))]
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    app = make_app(
        "Lakehouse model API",
        "Flight delay: the probability that a flight arrives more than 15 minutes late, "
        "from features fetched on the server.",
        replica.settings.serve,
        open_paths=("/healthz",),
    )
    app.router.lifespan_context = lifespan
    instrument(app, replica.metrics)

    @app.get("/healthz", summary="liveness and the champion in use")
    async def healthz() -> dict[str, Any]:
        version = replica.model.version if replica.model else None
        return {"status": "ok", "model": MODEL_NAME, "model_version": version, "problem": None if version else replica.problem}

    @app.post(f"/{MODEL_NAME}/predict", summary="delay probability of one flight or a list", response_model=Predictions)
    async def predict(
        flights: Annotated[Flight | list[Flight], Body(description="one flight, or a list of flights")],
    ) -> Predictions:
        started = time.perf_counter()
        model = replica.model  # this request's model, whatever a swap does meanwhile
        if model is None:
            raise ApiError(503, replica.problem, None)
        many = flights if isinstance(flights, list) else [flights]
        if not many:
            raise ApiError(422, "the list of flights is empty", "body")
        if len(many) > MAX_FLIGHTS:
            raise ApiError(422, f"at most {MAX_FLIGHTS} flights per request; got {len(many)}", "body")
        try:
            fetched = await asyncio.to_thread(replica.features.online_features, many, model)
        except FeatureInputError as exc:
            raise ApiError(422, str(exc), f"{exc.index}.{exc.field}" if isinstance(flights, list) else exc.field) from None
        except Exception as exc:
            log.exception("online features failed")
            raise ApiError(503, f"online features unavailable: {type(exc).__name__}: {exc}", None) from None
        rows = [{name: row.get(name) for name in model.feature_names} for row in fetched]
        probabilities = await asyncio.gather(*(replica.score((model, row)) for row in rows))
        latency_ms = (time.perf_counter() - started) * 1000
        replica.record(many, rows, probabilities, model.version, latency_ms)
        return Predictions(
            model=MODEL_NAME,
            predictions=[
                Prediction(
                    delay_probability=p,
                    model_version=model.version,
                    features=row,
                    missing_features=[name for name, value in row.items() if value is None],
                )
                for row, p in zip(rows, probabilities, strict=True)
            ],
        )

    return app


@serve.deployment
@serve.ingress()
class FlightDelayModel:
    """One replica of the model endpoint; the model source and feature client are injected."""

    def __init__(
        self, settings: Settings, model_source: ModelSource, feature_client: FeatureClient, options: ModelOptions
    ) -> None:
        self.settings, self.source, self.features, self.options = settings, model_source, feature_client, options
        self.metrics = RequestMetrics.create("model")
        self.model_metrics = ModelMetrics.create()
        # No usable champion yet: the app still starts, predict answers 503 saying why, and the
        # poll picks up the next promoted one.
        self.model: LoadedModel | None = None
        self._refused: tuple[str, float] | None = None  # (version, when) that failed to load
        self.problem = "no champion model has been promoted yet"
        version: str | None = None
        try:
            version = model_source.champion_version()
            if version:
                self._swap(self._load(version))
        except Exception as exc:
            self._refuse(version, exc)
        self.score.set_max_batch_size(options.max_batch_size)  # type: ignore[attr-defined]
        self.score.set_batch_wait_timeout_s(options.batch_wait_timeout_s)  # type: ignore[attr-defined]
        self.inference = InferenceLog(
            settings.table_path("bronze", "flight_delay_inferences"),
            options.inference_flush_rows,
            options.inference_flush_s,
            self.model_metrics.inference_pending,
        )

    def _load(self, version: str) -> LoadedModel:
        model = self.source.load_model(version)
        self.features.check(model)
        return model

    def _swap(self, model: LoadedModel) -> None:
        previous, self.model = self.model, model
        if previous is not None and previous.version != model.version:
            self.model_metrics.model_info.set(0, tags={"model_version": previous.version})
        self.model_metrics.model_info.set(1, tags={"model_version": model.version})

    def _refuse(self, version: str | None, exc: Exception) -> None:
        self._refused = (version, time.monotonic()) if version else None
        self.problem = f"champion {version!r} cannot be served: {exc}" if version else f"the model source failed: {exc}"
        log.error("%s; still serving %s", self.problem, self.model.version if self.model else None)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_model_api(self)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def score(self, items: list[tuple[LoadedModel, dict[str, float | None]]]) -> list[float]:
        """One `inplace_predict` per model in the batch (two only while a swap is under way)."""
        import numpy as np

        self.model_metrics.batch_size.observe(len(items))
        out = [math.nan] * len(items)
        by_version: dict[str, list[int]] = {}
        for i, (model, _row) in enumerate(items):
            by_version.setdefault(model.version, []).append(i)
        for positions in by_version.values():
            model = items[positions[0]][0]
            matrix = np.array([[_nan(items[i][1].get(n)) for n in model.feature_names] for i in positions], dtype=np.float32)
            probabilities = model.booster.inplace_predict(matrix, iteration_range=model.iteration_range)
            for i, p in zip(positions, probabilities, strict=True):
                out[i] = float(p)
        return out

    def record(
        self, flights: list[Flight], features: list[dict[str, float | None]], probabilities: list[float], version: str, latency_ms: float
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        request_id = uuid.uuid4().hex
        self.inference.add(
            [
                {
                    "request_id": request_id,
                    "predicted_at": now,
                    "request": flight.model_dump_json(),
                    "features": json.dumps(row),
                    "delay_probability": probability,
                    "model_version": version,
                    "latency_ms": latency_ms,
                    "replica": self.inference.replica,
                }
                for flight, row, probability in zip(flights, features, probabilities, strict=True)
            ]
        )
        self.model_metrics.predictions.inc(len(probabilities), tags={"model_version": version})

    async def watch_champion(self, stop: asyncio.Event) -> None:
        """Swap a newly promoted champion in; a failed load keeps serving the current one."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.options.champion_poll_s)
            if self.model is not None:  # Ray drops a gauge value not set again within two export intervals
                self.model_metrics.model_info.set(1, tags={"model_version": self.model.version})
            version: str | None = None
            try:
                version = await asyncio.to_thread(self.source.champion_version)
                if not version or (self.model is not None and version == self.model.version):
                    continue
                if self._refused and self._refused[0] == version and time.monotonic() - self._refused[1] < REFUSED_RETRY_S:
                    continue  # do not retry a broken champion every poll
                self._swap(await asyncio.to_thread(self._load, version))
                self._refused = None
                log.info("champion swapped in: %s", version)
            except Exception as exc:
                self._refuse(version, exc)


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def build(args: dict[str, Any]) -> Application:
    """The application builder named in serve/config.yaml (`serve.model_app:build`).

    args: `model_source` (`registry`, the default: the champion of `ray_jobs.registry`, with its
    Feast FeatureService from the online store; or `files`: a FileModelSource folder, `model_dir`,
    default `<lake>/_models/flight-delay`, with features from the gold tables) and the
    ModelOptions fields.
    """
    from lake.settings import load_settings

    args = dict(args)
    model_dir = args.pop("model_dir", None)
    kind = args.pop("model_source", "registry")
    known = set(ModelOptions.__dataclass_fields__)
    unknown = set(args) - known
    if unknown:
        raise ValueError(
            f"serve.model_app: unknown args {', '.join(sorted(unknown))}; known: model_source, model_dir, {', '.join(sorted(known))}"
        )
    settings = load_settings()
    source: ModelSource
    features: FeatureClient
    if kind == "registry":
        source, features = RegistryModelSource(settings), FeastFeatureClient(settings)
    elif kind == "files":
        source = FileModelSource(model_dir or str(Path(settings.lake_root) / "_models" / MODEL_NAME))
        features = GoldFeatureClient(settings)
    else:
        raise ValueError(f"serve.model_app: args.model_source must be 'registry' or 'files'; got {kind!r}")
    return FlightDelayModel.bind(settings, source, features, ModelOptions(**args))  # type: ignore[attr-defined]


def train_reference_model(settings: Settings, rounds: int = 20, max_depth: int = 4) -> xgboost.Booster:
    """A small booster on silver.flights with GoldFeatureClient's features: for tests, benchmarks and
    demos that serve `model_source: files`. Label: arrival more than 15 minutes late."""
    import numpy as np
    import xgboost
    from deltalake import DeltaTable

    client = GoldFeatureClient(settings)
    client._refresh()
    columns = ["carrier", "origin", "dest", "sched_dep_utc", "arr_delay"]
    flights = DeltaTable(settings.table_path("silver", "flights")).to_pyarrow_table(columns=columns).to_pylist()
    flights = [f for f in flights if f["arr_delay"] is not None and f["sched_dep_utc"] is not None]
    rows = [client.features_of(f["carrier"], f["origin"], f["dest"], f["sched_dep_utc"]) for f in flights]
    matrix = np.array([[_nan(r[n]) for n in GoldFeatureClient.FEATURES] for r in rows], dtype=np.float32)
    labels = np.array([f["arr_delay"] > 15 for f in flights], dtype=np.float32)
    data = xgboost.DMatrix(matrix, label=labels, feature_names=list(GoldFeatureClient.FEATURES))
    params = {"objective": "binary:logistic", "max_depth": max_depth, "eta": 0.3, "nthread": 1, "seed": 7}
    return xgboost.train(params, data, num_boost_round=rounds)
