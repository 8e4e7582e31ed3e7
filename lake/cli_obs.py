"""`lakehouse lineage` and `lakehouse catalog`: what feeds what, and what is in the lake.

`lake.cli` calls `register(app)` while it is being imported, so its helpers are imported inside
the commands. Lineage without `--at` needs no Spark (it is read from the declarations).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Annotated

import typer


def lineage(
    table: Annotated[str | None, typer.Argument(help="an asset, e.g. gold.carrier_daily_performance (default: the whole graph)")] = None,
    at: Annotated[int | None, typer.Option("--at", help="trace this Delta version of TABLE down to the input versions it read")] = None,
    fmt_mermaid: Annotated[bool, typer.Option("--mermaid", help="print the graph as a Mermaid flowchart")] = False,
    write_docs: Annotated[bool, typer.Option("--write-docs", help="regenerate docs/lineage.md from the declarations")] = False,
) -> None:
    """Upstream and downstream of an asset, from the sources to the model and the endpoints.

    With --at VERSION (or --at -1 for the latest), follow the userMetadata of TABLE's commit down
    to the exact silver and bronze versions it was built from.
    """
    from rich.markup import escape

    from lake import lineage as lin
    from lake.cli import _fail, _settings, _spark, out

    settings = _settings()
    try:
        nodes = lin.graph(settings)
    except (ValueError, TypeError) as exc:
        raise _fail(str(exc), 2) from None
    if write_docs:
        out.print(f"wrote {lin.write_doc(settings)}")
        return
    if fmt_mermaid:
        sys.stdout.write(lin.mermaid(nodes) + "\n")
        return
    if table is None:
        for name in sorted(nodes, key=lambda n: (list(lin._SHAPES).index(nodes[n].kind), n)):
            reads = ", ".join(nodes[name].inputs)
            out.print(f"{name:<36} {nodes[name].kind:<12} {('<- ' + reads) if reads else ''}", highlight=False, soft_wrap=True)
        return
    if table not in nodes:
        raise _fail(f"unknown asset {table!r}; `lakehouse lineage` lists them", 2)
    if at is not None:
        spark = _spark(settings)
        try:
            chain = lin.trace(spark, settings, table, None if at < 0 else at)
        except KeyError as exc:
            raise _fail(str(exc.args[0]), 2) from None
        for link in chain:
            out.print(f"{'  ' * link.depth}{link.table} v{link.version} ({link.operation}, run {link.run_id or '?'})", highlight=False, soft_wrap=True)
        return
    out.print(f"[bold]{table}[/bold] ({nodes[table].kind}): {escape(nodes[table].description)}", soft_wrap=True)
    for title, walk in (("upstream", lin.upstream), ("downstream", lin.downstream)):
        found = walk(nodes, table)
        out.print(f"{title}:" + ("" if found else " none"))
        for depth, name in found:
            out.print(f"  {'  ' * (depth - 1)}{name} ({nodes[name].kind})", highlight=False, soft_wrap=True)


def catalog(
    apply: Annotated[bool, typer.Option("--apply", help="write declared descriptions/owners/column comments into the tables first")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per table instead of a table")] = False,
) -> None:
    """The lake's tables: rows, latest version, age of the last commit, quality status, owner, description."""
    from rich.table import Table as RichTable

    from lake import catalog as cat
    from lake.cli import _settings, _spark, out

    settings = _settings()
    spark = _spark(settings)
    if apply:
        declared = cat.declarations(settings)
        commits = sum(cat.apply(spark, settings, name, d) for name, d in declared.items())
        out.print(f"catalog: {commits} metadata commits to bring the tables in line with their declarations")
    now = dt.datetime.now(dt.UTC)
    entries = cat.entries(spark, settings)
    if as_json:
        for e in entries:
            sys.stdout.write(
                json.dumps(
                    {
                        "table": e.table, "rows": e.rows, "version": e.version,
                        "last_commit": e.last_commit.isoformat() if e.last_commit else None,
                        "age_seconds": e.age_seconds(now), "quality": e.quality, "owner": e.owner,
                        "description": e.description,
                    }
                )
                + "\n"
            )
        return
    grid = RichTable("table", "rows", "version", "last commit", "quality", "owner", "description", title="catalog")
    grid.columns[0].no_wrap = True
    for e in entries:
        age = e.age_seconds(now)
        grid.add_row(
            e.table, str(e.rows), str(e.version), _age(age), e.quality or "not checked", e.owner, e.description
        )
    out.print(grid)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def register(app: typer.Typer) -> None:
    """Add the lineage and catalog commands to the `lakehouse` app."""
    app.command("lineage")(lineage)
    app.command("catalog")(catalog)
