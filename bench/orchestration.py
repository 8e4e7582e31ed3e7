"""Prefect's overhead per task: 100 no-op tasks in a flow vs the same 100 calls without Prefect.

Measured inside one flow run, in a child process with its own PREFECT_HOME (Prefect's ephemeral
server on a fresh SQLite database, as `lakehouse run` uses when no server is up), so flow and
server start-up are reported separately and do not blur the per-task figure.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

TASKS = 100


def noop(i: int) -> int:
    return i


def _child(repetitions: int) -> dict[str, Any]:
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    prefect_noop = task(cache_policy=NO_CACHE, task_run_name="noop-{i}")(noop)
    plain: list[float] = []
    with_prefect: list[float] = []

    @flow(name="bench-overhead")
    def many() -> None:
        for _ in range(repetitions):
            t0 = time.perf_counter()
            for i in range(TASKS):
                noop(i)
            plain.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for i in range(TASKS):
                prefect_noop(i)
            with_prefect.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    many()
    return {"plain_s": plain, "prefect_s": with_prefect, "flow_wall_s": time.perf_counter() - t0}


@dataclass
class OverheadResult:
    tasks: int
    repetitions: int
    plain_median_s: float
    prefect_median_s: float
    per_task_ms: float
    flow_wall_s: float  # the whole child flow run, server start and every repetition included

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run(repetitions: int = 3) -> OverheadResult:
    with tempfile.TemporaryDirectory(prefix="bench-prefect-") as home:
        env = {
            **os.environ,
            "PREFECT_HOME": home,
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",  # a busy 2-core machine is slow to start it
        }
        env.pop("PREFECT_API_URL", None)
        out = subprocess.run(
            [sys.executable, "-m", "bench.orchestration", str(repetitions)],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=True,
        ).stdout
    raw = json.loads(out.strip().splitlines()[-1])
    plain, prefect = statistics.median(raw["plain_s"]), statistics.median(raw["prefect_s"])
    return OverheadResult(TASKS, repetitions, plain, prefect, (prefect - plain) / TASKS * 1000, raw["flow_wall_s"])


def markdown(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['tasks']} no-op tasks called one after another inside one flow run, against the same "
        f"{r['tasks']} calls without Prefect, {r['repetitions']} repetition(s), median wall seconds; "
        "Prefect's ephemeral server on a fresh SQLite database.",
        "",
        "| | median s for the batch | per call |",
        "|---|---|---|",
        f"| plain function calls | {r['plain_median_s']:.4f} | {r['plain_median_s'] / r['tasks'] * 1e6:.1f} µs |",
        f"| Prefect tasks | {r['prefect_median_s']:.2f} | {r['prefect_median_s'] / r['tasks'] * 1000:.1f} ms |",
        "",
        f"Prefect adds **{r['per_task_ms']:.1f} ms per task**. The whole flow run, ephemeral server start "
        f"included, took {r['flow_wall_s']:.1f} s. Our flows run a few dozen tasks that each take seconds "
        "to minutes of Spark work, so this overhead is well under 1% of a run.",
    ]


if __name__ == "__main__":
    print(json.dumps(_child(int(sys.argv[1]) if len(sys.argv) > 1 else 3)))
