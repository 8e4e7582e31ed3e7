"""`lakehouse serve`: the model and data endpoints on Ray Serve, from serve/config.yaml.

`lake.cli` calls `register(app)` while it is being imported, so `lake.cli`'s helpers and Ray are
imported inside the command. URLs go to stdout, status and errors to stderr.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer


def serve(
    config: Annotated[Path | None, typer.Option(help="Serve config (default: serve.config_file, serve/config.yaml)")] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="deploy to the Ray cluster at ray.address (RAY_ADDRESS) and return")
    ] = False,
    stop: Annotated[
        bool, typer.Option("--stop", help="shut Serve down on the Ray cluster at ray.address (or the local head)")
    ] = False,
    status: Annotated[bool, typer.Option("--status", help="print the applications' status and URLs")] = False,
) -> None:
    """Serve the gold tables and the flight-delay model over HTTP (Ray Serve, 127.0.0.1:8000 by default).

    Without --detach it runs in the foreground (on the Ray cluster at ray.address, or on a private
    local Ray it starts) until Ctrl-C, then shuts Serve down. Host, port and timeouts come from
    the `serve:` settings; the replicas get this command's LAKEHOUSE_* environment.
    """
    from lake.cli import _fail, _settings, console, out
    from serve import deploy as platform

    settings = _settings()
    try:
        parsed = platform.load_config(settings, str(config) if config else None)
    except platform.DeployError as exc:
        raise _fail(str(exc), 2) from None
    if detach or stop or status:
        from ray_jobs.cluster import driver_address, is_up

        # ray.address, RAY_ADDRESS, else the local head (`lakehouse ray start`, or a platform run's).
        configured = settings.ray.address or os.environ.get("RAY_ADDRESS")
        address = driver_address(settings)
        if not address or (not configured and not is_up(settings)):
            raise _fail(
                "--detach, --stop and --status need a running Ray cluster: set ray.address or RAY_ADDRESS, "
                "or start the local head with `lakehouse ray start`",
                2,
            )
        settings = settings.model_copy(update={"ray": settings.ray.model_copy(update={"address": address})})
    import ray

    started_ray = platform.connect(settings)
    try:
        if stop:
            platform.shutdown()
            out.print("Serve shut down")
            return
        if status:
            for app_url in platform.urls(parsed):
                out.print(f"{app_url.name}: {app_url.status}  " + "  ".join(app_url.urls))
            return
        with console.status("deploying the Serve applications..."):
            try:
                urls = platform.deploy(parsed)
            except platform.DeployError as exc:
                raise _fail(str(exc)) from None
        for app_url in urls:
            out.print(f"{app_url.name}: " + "  ".join(app_url.urls))
        if detach:
            return
        console.print("serving; Ctrl-C stops")
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        done.wait()
        platform.shutdown()
    finally:
        if started_ray or not detach:
            ray.shutdown()


def register(app: typer.Typer) -> None:
    """Add `serve` to the `lakehouse` app."""
    app.command("serve")(serve)
