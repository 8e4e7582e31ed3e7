"""Serving: /predict and the data endpoint on Ray Serve, against a bare uvicorn + FastAPI + xgboost.

Both model servers do the same work per request (features from the gold tables, one
`inplace_predict` on the same booster); the difference is what Ray Serve costs (proxy hop,
batching, replica routing). Latency percentiles and throughput are measured at concurrency 1 and
16 with a closed-loop async client on the same machine. The Serve processes' memory (controller,
proxy, replicas) is read before and after a sustained mixed load run; growth over 10% flags a leak.

`python -m bench.serving [--lake PATH] [--load-s 300] [--quick]` runs it alone; `make bench` runs
it after the pipeline benchmarks on the lake they built.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.common import lake_environ, lake_settings, prepare_environment
from lake.settings import REPO_ROOT
from serve.model_app import Flight  # module level: FastAPI resolves the baseline's body annotation here

PREDICT_FLIGHT = {"carrier": "UA", "flight": 1545, "origin": "EWR", "dest": "IAH", "sched_dep_utc": "2013-12-03T10:15:00"}
DATA_QUERY = {"filter": ["carrier:in:UA,AA,DL", "flights:gt:50"], "order_by": "-flights", "limit": 50}
MEMORY_GROWTH_LIMIT = 0.10


@dataclass
class Latency:
    target: str
    concurrency: int
    seconds: float
    requests: int = 0
    errors: int = 0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    per_s: float = float("nan")


@dataclass
class ServingResult:
    load_s: float
    predict: list[Latency] = field(default_factory=list)
    data: list[Latency] = field(default_factory=list)
    memory_before_mib: float = float("nan")
    memory_after_mib: float = float("nan")
    load_requests: int = 0
    load_errors: int = 0

    @property
    def memory_growth(self) -> float:
        if not self.memory_before_mib:
            return float("nan")  # no Serve process found: reported as n/a, never a crash
        return self.memory_after_mib / self.memory_before_mib - 1

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "memory_growth": self.memory_growth, "memory_growth_ok": self.memory_growth < MEMORY_GROWTH_LIMIT}


async def closed_loop(url: str, method: str, body: Any, params: Any, headers: dict[str, str], concurrency: int, seconds: float) -> tuple[list[float], int]:
    """`concurrency` clients each sending the next request when the last one answered."""
    import httpx

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:

        async def one_client() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    response = await client.request(method, url, json=body, params=params)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return latencies, errors


def measure(target: str, url: str, method: str, body: Any, params: Any, concurrency: int, seconds: float, headers: dict[str, str] | None = None) -> Latency:
    asyncio.run(closed_loop(url, method, body, params, headers or {}, concurrency, min(3.0, seconds)))  # warm-up
    latencies, errors = asyncio.run(closed_loop(url, method, body, params, headers or {}, concurrency, seconds))
    result = Latency(target, concurrency, seconds, len(latencies), errors)
    if latencies:
        ordered = sorted(latencies)
        result.p50_ms = statistics.median(ordered) * 1000
        result.p99_ms = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        result.per_s = len(latencies) / seconds
    return result


def baseline_app() -> Any:
    """The bare model server (uvicorn factory): the same features and booster, no Serve."""
    import numpy as np
    import xgboost
    from fastapi import FastAPI

    from lake.settings import load_settings
    from serve.model_app import MODEL_NAME, FileModelSource, GoldFeatureClient

    settings = load_settings()
    source = FileModelSource(str(Path(settings.lake_root) / "_models" / MODEL_NAME))
    version = source.champion_version() or ""
    booster: xgboost.Booster = source.load(version)
    names = booster.feature_names or []
    features = GoldFeatureClient(settings)
    app = FastAPI()

    @app.post("/predict")
    def predict(flight: Flight) -> dict[str, Any]:
        row = features.online_features([flight])[0]
        matrix = np.array([[np.nan if row[n] is None else row[n] for n in names]], dtype=np.float32)
        return {"delay_probability": float(booster.inplace_predict(matrix)[0]), "model_version": version, "features": row}

    return app


def serve_memory_mib(head: Any) -> float:
    """RSS of the Serve processes of our head: controller, proxy and replicas."""
    import psutil

    from serve.deploy import head_processes

    total = 0
    for proc in head_processes(head):
        try:
            title = " ".join(proc.cmdline())
            if "Serve" in title or "ProxyActor" in title:
                total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def files_config(workdir: Path) -> Path:
    """serve/config.yaml with the model app on `model_source: files` (the booster trained here and
    gold-table features, what the baseline uses): the bench lake has no model registry."""
    import yaml

    config = yaml.safe_load((REPO_ROOT / "serve" / "config.yaml").read_text())
    for app in config["applications"]:
        if app["name"] == "model":
            app["args"] = {**app["args"], "model_source": "files"}
    target = workdir / "serve-config.yaml"
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def ensure_lake(lake: Path | None, workdir: Path) -> Path:
    """A lake with silver and gold tables: the given one, else two weeks of December built here."""
    if lake is not None and (lake / "gold").is_dir():
        return lake
    from lake import pipeline
    from lake.seed import seed
    from lake.spark import get_spark

    root = workdir / "serving-lake"
    settings = lake_settings(root)
    spark = get_spark(settings)
    seed(settings, dt.date(2013, 12, 1), dt.date(2013, 12, 14))
    pipeline.run(spark, settings)
    return root


def run(workdir: Path, lake: Path | None = None, load_s: float = 300, step_s: float = 20) -> ServingResult:
    from serve.deploy import free_port, start_private_head, stop_private_head
    from serve.model_app import MODEL_NAME, FileModelSource, train_reference_model

    root = ensure_lake(lake, workdir)
    settings = lake_settings(root)
    models = Path(settings.lake_root) / "_models" / MODEL_NAME
    models.mkdir(parents=True, exist_ok=True)
    train_reference_model(settings).save_model(str(models / "bench.ubj"))
    FileModelSource(str(models)).promote("bench")

    result = ServingResult(load_s)
    head = start_private_head()
    port, baseline_port = free_port(), free_port()
    environ = {**lake_environ(root), **head.environ, "LAKEHOUSE_RAY__ADDRESS": head.address, "LAKEHOUSE_SERVE__PORT": str(port)}
    environ.pop("SERVE_AUTH_TOKEN", None)
    baseline = None
    try:
        config = files_config(workdir)
        started = subprocess.run([sys.executable, "-m", "lake", "serve", "--detach", "--config", str(config)],
                                 env=environ, cwd=REPO_ROOT,
                                 capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
        if started.returncode != 0:
            raise RuntimeError(f"lakehouse serve failed: {started.stderr[-3000:]}")
        base = f"http://127.0.0.1:{port}"
        baseline = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench.serving:baseline_app", "--factory", "--host", "127.0.0.1",
             "--port", str(baseline_port), "--log-level", "warning"],
            env=environ, cwd=REPO_ROOT,
        )  # fmt: skip
        _wait_http(f"http://127.0.0.1:{baseline_port}/docs")
        for concurrency in (1, 16):
            result.predict.append(measure("serve", f"{base}/v1/models/{MODEL_NAME}/predict", "POST", PREDICT_FLIGHT, None, concurrency, step_s))
            result.predict.append(measure("uvicorn", f"http://127.0.0.1:{baseline_port}/predict", "POST", PREDICT_FLIGHT, None, concurrency, step_s))
            result.data.append(measure("serve", f"{base}/v1/tables/carrier_daily_performance/rows", "GET", None, DATA_QUERY, concurrency, step_s))
        result.memory_before_mib = serve_memory_mib(head)

        async def mixed() -> tuple[int, int]:
            predict = closed_loop(f"{base}/v1/models/{MODEL_NAME}/predict", "POST", PREDICT_FLIGHT, None, {}, 8, load_s)
            data = closed_loop(f"{base}/v1/tables/carrier_daily_performance/rows", "GET", None, DATA_QUERY, {}, 8, load_s)
            (a, ea), (b, eb) = await asyncio.gather(predict, data)
            return len(a) + len(b), ea + eb

        result.load_requests, result.load_errors = asyncio.run(mixed())
        time.sleep(3)  # let the inference log flush and the replicas settle
        result.memory_after_mib = serve_memory_mib(head)
    finally:
        if baseline is not None:
            baseline.terminate()
            baseline.wait(30)
        subprocess.run([sys.executable, "-m", "lake", "serve", "--stop"], env=environ, cwd=REPO_ROOT,
                       capture_output=True, timeout=120, check=False)  # fmt: skip
        stop_private_head(head)
    return result


def _wait_http(url: str, wait_s: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer in {wait_s:.0f}s")


def markdown(r: dict[str, Any]) -> list[str]:
    lines = [
        "| endpoint | server | concurrency | requests | errors | p50 ms | p99 ms | requests/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in (("/predict", r["predict"]), ("data rows", r["data"])):
        for x in rows:
            lines.append(
                f"| {name} | {x['target']} | {x['concurrency']} | {x['requests']} | {x['errors']} | "
                f"{x['p50_ms']:.1f} | {x['p99_ms']:.1f} | {x['per_s']:.1f} |"
            )
    lines.append("")
    lines.append(
        f"Serve processes' memory: {r['memory_before_mib']:.0f} MiB before, {r['memory_after_mib']:.0f} MiB after a "
        f"{r['load_s']:.0f} s mixed load run ({r['load_requests']} requests, {r['load_errors']} errors): "
        f"growth {r['memory_growth'] * 100:+.1f}% ({'within' if r['memory_growth_ok'] else 'OVER'} the 10% budget)."
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lake", type=Path, help="a lake with silver and gold tables (default: build two weeks)")
    parser.add_argument("--load-s", type=float, default=300, help="length of the memory load run (default 300)")
    parser.add_argument("--step-s", type=float, default=20, help="seconds per latency measurement (default 20)")
    parser.add_argument("--quick", action="store_true", help="30 s load run, 5 s per measurement")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="lakehouse-bench-serving-", dir="/tmp"))
    prepare_environment(workdir)
    os.environ.pop("SERVE_AUTH_TOKEN", None)
    load_s, step_s = (30.0, 5.0) if args.quick else (args.load_s, args.step_s)
    result = run(workdir, args.lake, load_s, step_s).to_json()
    out = REPO_ROOT / "bench" / "results" / ("serving-quick.json" if args.quick else "serving.json")
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print("\n".join(markdown(result)))
    print(f"\nwritten: {out.relative_to(REPO_ROOT)}")
    return 0 if result["memory_growth_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
