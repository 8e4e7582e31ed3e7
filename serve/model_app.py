"""The model endpoint: POST /v1/models/flight-delay/predict, batched, hot-swapped, logged to Delta.

A request carries one flight or a list (carrier, flight number, origin, destination, scheduled
departure in UTC, tail number). The replica fetches the flights' online features itself, scores
them with the champion XGBoost booster (`@serve.batch` gathers rows across concurrent requests
into one `inplace_predict`), and answers the delay probability, the model version and the feature
values used. A background task polls the model source and swaps a newly promoted champion in by
replacing one reference: a batch already running finishes on the model it started with, so no
request is dropped. Every prediction is buffered and appended in batches to a Delta inference
table with delta-rs (no JVM) for monitoring.

Dependencies come in through the constructor (DESIGN.md, "Serve"): a `ModelSource` (where the
champion lives) and a `FeatureClient` (online features). `build` wires the defaults from the app's
args in serve/config.yaml.
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
    import pyarrow as pa
    import xgboost
    from ray.serve import Application

log = logging.getLogger(__name__)
MODEL_NAME = "flight-delay"
MAX_FLIGHTS = 1000  # per request; more is a 422 naming the body


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
    features: dict[str, float | None]


class Predictions(BaseModel):
    model: str
    predictions: list[Prediction]


class FeatureClient(Protocol):
    """Online features for flights, one dict per flight (a missing value is None)."""

    @property
    def feature_names(self) -> tuple[str, ...]: ...

    def online_features(self, flights: list[Flight]) -> list[dict[str, float | None]]: ...


class ModelSource(Protocol):
    """Where the champion lives: a cheap poll for its version, and a loader."""

    def champion_version(self) -> str | None: ...

    def load(self, version: str) -> xgboost.Booster: ...


@dataclass(frozen=True)
class LoadedModel:
    version: str
    booster: Any  # xgboost.Booster
    feature_names: tuple[str, ...]


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

    def promote(self, version: str) -> None:
        tmp = self.folder / f".CHAMPION.{uuid.uuid4().hex}"
        tmp.write_text(version)
        tmp.replace(self.folder / "CHAMPION")


class RegistryModelSource:
    """The champion of the model registry (`ray_jobs.registry`, issue 6): versions are its
    integer model versions. Its models are trained on Feast features, so it pairs with a Feast
    feature client; with another client the replica refuses the model (features missing)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def champion_version(self) -> str | None:
        from ray_jobs import registry

        record = registry.champion(self.settings)
        return str(record.model_version) if record else None

    def load(self, version: str) -> xgboost.Booster:
        from ray_jobs import registry

        return registry.load_model(registry.get(self.settings, int(version)))


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

    def online_features(self, flights: list[Flight]) -> list[dict[str, float | None]]:
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
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


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

    def __init__(self, path: str, flush_rows: int, flush_s: float) -> None:
        self.path, self.flush_rows, self.flush_s = path, flush_rows, flush_s
        self._rows: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()
        self.replica = f"{socket.gethostname()}:{os.getpid()}"

    @property
    def pending(self) -> int:
        return len(self._rows)

    def add(self, rows: list[dict[str, Any]]) -> None:
        self._rows.extend(rows)

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
            return len(rows)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.flush_s)
            if self.pending:
                await self.flush()
        await self.flush()


@dataclass(frozen=True)
class ModelOptions:
    max_batch_size: int = 64
    batch_wait_timeout_s: float = 0.005
    champion_poll_s: float = 2.0
    inference_flush_rows: int = 1000
    inference_flush_s: float = 2.0


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
        if replica.model is None:
            raise ApiError(503, replica.problem, None)
        many = flights if isinstance(flights, list) else [flights]
        if not many:
            raise ApiError(422, "the list of flights is empty", "body")
        if len(many) > MAX_FLIGHTS:
            raise ApiError(422, f"at most {MAX_FLIGHTS} flights per request; got {len(many)}", "body")
        features = await asyncio.to_thread(replica.features.online_features, many)
        scored = await asyncio.gather(*(replica.score(row) for row in features))
        latency_ms = (time.perf_counter() - started) * 1000
        replica.record(many, features, scored, latency_ms)
        return Predictions(
            model=MODEL_NAME,
            predictions=[Prediction(delay_probability=p, model_version=v, features=f) for f, (p, v) in zip(features, scored, strict=True)],
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
        # No usable champion yet: the app still starts, predict answers 503 saying why, and the
        # poll picks up the next promoted one.
        self.model: LoadedModel | None = None
        self._refused: str | None = None
        self.problem = "no champion model has been promoted yet"
        version = model_source.champion_version()
        if version:
            try:
                self.model = self._load(version)
            except (RuntimeError, OSError, ValueError) as exc:
                self.problem = f"champion {version!r} cannot be served: {exc}"
                log.error(self.problem)
        self.score.set_max_batch_size(options.max_batch_size)  # type: ignore[attr-defined]
        self.score.set_batch_wait_timeout_s(options.batch_wait_timeout_s)  # type: ignore[attr-defined]
        self.inference = InferenceLog(
            settings.table_path("bronze", "flight_delay_inferences"), options.inference_flush_rows, options.inference_flush_s
        )
        self.metrics = RequestMetrics.create("model")
        self.predictions = counter("lakehouse_serve_predictions", "Flights scored", ("model_version",))

    def _load(self, version: str) -> LoadedModel:
        booster = self.source.load(version)
        names = tuple(booster.feature_names or ())
        if not names:
            raise RuntimeError(f"model {version!r} has no feature names; train it on a DMatrix with feature_names")
        # A model wanting features this client does not provide would score NaNs: refuse it.
        missing = sorted(set(names) - set(self.features.feature_names))
        if missing:
            raise RuntimeError(f"model {version!r} needs features the feature client lacks: {', '.join(missing)}")
        return LoadedModel(version, booster, names)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_model_api(self)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def score(self, rows: list[dict[str, float | None]]) -> list[tuple[float, str]]:
        import numpy as np

        model = self.model  # one model for the whole batch, even if a swap lands meanwhile
        assert model is not None, "predict checks for a champion first"
        matrix = np.array([[_nan(row.get(name)) for name in model.feature_names] for row in rows], dtype=np.float32)
        probabilities = model.booster.inplace_predict(matrix)
        return [(float(p), model.version) for p in probabilities]

    def record(
        self, flights: list[Flight], features: list[dict[str, float | None]], scored: list[tuple[float, str]], latency_ms: float
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
                for flight, row, (probability, version) in zip(flights, features, scored, strict=True)
            ]
        )
        for version in {v for _, v in scored}:
            self.predictions.inc(sum(1 for _, v in scored if v == version), tags={"model_version": version})

    async def watch_champion(self, stop: asyncio.Event) -> None:
        """Swap a newly promoted champion in; a failed load keeps serving the current one."""
        version: str | None = None
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.options.champion_poll_s)
            try:
                version = await asyncio.to_thread(self.source.champion_version)
                if version and version != self._refused and (self.model is None or version != self.model.version):
                    self.model = await asyncio.to_thread(self._load, version)
                    log.info("champion swapped in: %s", version)
            except Exception as exc:
                self._refused = version  # do not retry the same broken champion every poll
                self.problem = f"champion {version!r} cannot be served: {exc}"
                log.exception("champion poll failed; still serving %s", self.model.version if self.model else None)


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def build(args: dict[str, Any]) -> Application:
    """The application builder named in serve/config.yaml (`serve.model_app:build`).

    args: `model_source` (`files`, the default: a FileModelSource folder, `model_dir`, default
    `<lake>/_models/flight-delay`; or `registry`: the champion of `ray_jobs.registry`) and the
    ModelOptions fields. Features come from the gold tables (GoldFeatureClient).
    """
    from lake.settings import load_settings

    args = dict(args)
    model_dir = args.pop("model_dir", None)
    kind = args.pop("model_source", "files")
    known = set(ModelOptions.__dataclass_fields__)
    unknown = set(args) - known
    if unknown:
        raise ValueError(
            f"serve.model_app: unknown args {', '.join(sorted(unknown))}; known: model_source, model_dir, {', '.join(sorted(known))}"
        )
    settings = load_settings()
    source: ModelSource
    if kind == "registry":
        source = RegistryModelSource(settings)
    elif kind == "files":
        source = FileModelSource(model_dir or str(Path(settings.lake_root) / "_models" / MODEL_NAME))
    else:
        raise ValueError(f"serve.model_app: args.model_source must be 'files' or 'registry'; got {kind!r}")
    return FlightDelayModel.bind(  # type: ignore[attr-defined]
        settings, source, GoldFeatureClient(settings), ModelOptions(**args)
    )


def train_reference_model(settings: Settings, rounds: int = 20, max_depth: int = 4) -> xgboost.Booster:
    """A small booster on silver.flights with GoldFeatureClient's features: for tests, benchmarks and
    demos before the training pipeline (ray_jobs/) has promoted a champion. Label: arrival more than
    15 minutes late."""
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
