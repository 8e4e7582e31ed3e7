"""Peak memory of `lakehouse run` as a user starts it: the whole process tree, sampled.

The budget (6 GiB for the whole run, see `spark.driver_memory` in config/base.yml) is about
what the laptop sees, so the figure is the summed RSS of the CLI process and every child
(the Spark JVM, Python workers), sampled every 0.2 s from a fresh lake to the end of the run.
Summed RSS counts shared pages once per process, so it errs on the high side; a child caught
between vfork and exec (which reports its parent's memory) is not counted twice.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.common import lake_environ
from lake.settings import REPO_ROOT

BUDGET_GIB = 6.0
INTERVAL_S = 0.2


@dataclass
class MemoryResult:
    command: list[str]
    returncode: int
    wall_s: float
    peak_gib: float
    samples: int
    # at the peak: process name -> GiB, to tell the JVM's share from Python's
    peak_breakdown: dict[str, float] = field(default_factory=dict)
    log: str = ""

    @property
    def within_budget(self) -> bool:
        return self.returncode == 0 and self.peak_gib < BUDGET_GIB

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "budget_gib": BUDGET_GIB, "within_budget": self.within_budget}


def cli_command() -> list[str]:
    """`python -m lake run --no-ml --no-serve`: the batch pipeline (seed to gold) as a user runs it.

    The Ray stages run in the Ray head's processes, which outlive the command (serving stays
    up); benchmark 9 measures them.
    """
    return [sys.executable, "-m", "lake", "run", "--no-ml", "--no-serve"]


def _tree_rss(root: psutil.Process) -> dict[str, int]:
    """RSS by process name over `root` and all its descendants (processes may vanish meanwhile).

    A child caught between vfork and exec shares its parent's address space and reports the
    parent's RSS (the JVM spawns helpers such as `bash` this way); counting it would double the
    JVM, so a child whose (rss, vms) equals its parent's is the parent, not a second process.
    """
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    seen: dict[int, tuple[str, int, int, int]] = {}
    for proc in procs:
        try:
            with proc.oneshot():
                mem = proc.memory_info()
                seen[proc.pid] = (proc.name(), proc.ppid(), mem.rss, mem.vms)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    usage: dict[str, int] = {}
    for name, ppid, rss, vms in seen.values():
        parent = seen.get(ppid)
        if parent is not None and (parent[2], parent[3]) == (rss, vms):
            continue
        usage[name] = usage.get(name, 0) + rss
    return usage


def run(lake_root: Path, log_path: Path, seed_end: dt.date | None = None, timeout_s: float = 1500) -> MemoryResult:
    """Run the CLI on a fresh lake at `lake_root`, sampling the tree's RSS until it exits."""
    command = cli_command()
    env = lake_environ(lake_root, seed_end=seed_end)
    peak, breakdown, samples = 0, {}, 0
    with log_path.open("w") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        watched = psutil.Process(proc.pid)
        while proc.poll() is None:
            usage = _tree_rss(watched)
            samples += 1
            total = sum(usage.values())
            if total > peak:
                peak, breakdown = total, usage
            if time.perf_counter() - start > timeout_s:
                proc.kill()  # the child we started, by its handle
                break
            time.sleep(INTERVAL_S)
        returncode = proc.wait()
        wall = time.perf_counter() - start
    tail = log_path.read_text(errors="replace")[-3000:] if returncode else ""
    return MemoryResult(
        command=[Path(command[0]).name, *command[1:]],
        returncode=returncode,
        wall_s=wall,
        peak_gib=peak / 2**30,
        samples=samples,
        peak_breakdown={name: round(rss / 2**30, 3) for name, rss in sorted(breakdown.items())},
        log=tail,
    )
