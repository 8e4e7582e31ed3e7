"""`lakehouse orchestrator up|down|status`: the local Prefect server, deployments and worker.

Registered by `lake.cli` while it is imported, so `lake.cli`'s helpers are imported inside the
commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from lake.orchestrator import Status

orchestrator_app = typer.Typer(
    help="The local Prefect server on prefect.local_api_url, the deployments of prefect.yaml and a worker.",
    no_args_is_help=True,
)


def _show(st: Status) -> None:
    from lake.cli import out

    server_pid = f"  (pid {st.server_pid})" if st.server_pid else ""
    worker = f"running (pid {st.worker_pid})" if st.worker_pid else "not running"
    out.print(f"server   {'up' if st.server_up else 'down'}  {st.ui_url}{server_pid}")
    out.print(f"worker   {worker}  pool lakehouse")
    out.print(f"deployed {', '.join(st.deployments) if st.deployments else '-'}")


@orchestrator_app.command()
def up(
    worker: bool = typer.Option(True, "--worker/--no-worker", help="also start a worker for the pool"),
) -> None:
    """Start the server (unless one answers), create the pool, `prefect deploy --all`, start a worker."""
    from lake.cli import _fail, _settings, console
    from lake.orchestrator import OrchestratorError
    from lake.orchestrator import up as start

    settings = _settings()
    try:
        with console.status("starting the Prefect server, deploying prefect.yaml, starting a worker"):
            st = start(settings, with_worker=worker)
    except OrchestratorError as exc:
        raise _fail(str(exc)) from None
    _show(st)
    console.print(f"open {st.ui_url}; `export PREFECT_API_URL={st.api_url}` points the prefect CLI and flows at it")


@orchestrator_app.command()
def down() -> None:
    """Stop the worker and the server that `up` started."""
    from lake.cli import _settings, out
    from lake.orchestrator import down as stop

    stopped = stop(_settings())
    out.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@orchestrator_app.command()
def status() -> None:
    """Whether the server answers, the worker runs, and which deployments exist."""
    from lake.cli import _settings
    from lake.orchestrator import status as current

    st = current(_settings())
    _show(st)
    if not st.server_up:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(orchestrator_app, name="orchestrator")
