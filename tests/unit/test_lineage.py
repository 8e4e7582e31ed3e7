"""Lineage derived from the declarations; docs/lineage.md is the generated page, kept current."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from lake.cli import app
from lake.lineage import DOC_PATH, Asset, downstream, graph, mermaid, render_doc, upstream
from lake.settings import Settings


def test_docs_lineage_md_is_generated_from_the_code(settings: Settings) -> None:
    assert DOC_PATH.read_text() == render_doc(graph(settings)), "run `lakehouse lineage --write-docs` and commit docs/lineage.md"


def test_gold_traces_back_to_its_sources(settings: Settings) -> None:
    nodes = graph(settings)
    up = [name for _, name in upstream(nodes, "gold.carrier_daily_performance")]
    assert up[0] == "silver.flights"
    assert {"bronze.flights", "source.flights", "silver.airports", "bronze.airports", "source.airports"} <= set(up)
    assert "silver.weather" not in up
    down = {name for _, name in downstream(nodes, "bronze.airports")}
    assert {"silver.airports", "silver.flights", "gold.carrier_daily_performance", "gold.route_monthly"} <= down


def test_later_stages_extend_the_graph_to_the_endpoints(settings: Settings) -> None:
    extra = [
        Asset("features.flight_delay", "feature_view", ("gold.carrier_daily_performance", "silver.weather")),
        Asset("model.delay", "model", ("features.flight_delay",)),
        Asset("endpoint.predict", "endpoint", ("model.delay",)),
    ]
    nodes = graph(settings, extra)
    down = [(depth, name) for depth, name in downstream(nodes, "gold.carrier_daily_performance")]
    assert down == [(1, "features.flight_delay"), (2, "model.delay"), (3, "endpoint.predict")]
    up = {name for _, name in upstream(nodes, "endpoint.predict")}
    assert {"model.delay", "silver.flights", "bronze.weather", "source.flights"} <= up
    chart = mermaid(nodes)
    assert "gold_carrier_daily_performance --> features_flight_delay" in chart
    assert 'endpoint_predict(["endpoint.predict"])' in chart


def test_an_input_nothing_declares_is_refused(settings: Settings) -> None:
    with pytest.raises(ValueError, match=r"model\.x reads features\.missing, which nothing declares"):
        graph(settings, [Asset("model.x", "model", ("features.missing",))])
    with pytest.raises(ValueError, match="declared twice"):
        graph(settings, [Asset("gold.route_monthly", "gold")])


def test_cli_lineage_prints_upstream_and_downstream() -> None:
    result = CliRunner().invoke(app, ["lineage", "silver.flights"])
    assert result.exit_code == 0, result.output
    up, down = result.stdout.split("downstream:")
    assert "bronze.flights (bronze)" in up and "source.airports (source)" in up
    assert "gold.route_monthly (gold)" in down
    unknown = CliRunner().invoke(app, ["lineage", "gold.nope"])
    assert unknown.exit_code == 2 and "unknown asset 'gold.nope'" in unknown.output


def test_feature_tables_come_from_their_declarations(settings: Settings) -> None:
    from ray_jobs.features import FEATURE_TABLES

    nodes = graph(settings)
    assert FEATURE_TABLES
    for ft in FEATURE_TABLES:
        assert (nodes[ft.table].kind, nodes[ft.table].inputs) == ("feature_view", tuple(ft.inputs))


def test_the_event_stream_feeds_its_bronze_table_and_the_silver_table_it_merges_into(settings: Settings) -> None:
    from lake.stream import load_stream

    spec = load_stream(settings)
    assert spec.merge_into
    nodes = graph(settings)
    assert nodes[spec.target].inputs == (f"source.{spec.name}",)
    assert spec.target in nodes[spec.merge_into].inputs
    assert spec.target in {name for _, name in upstream(nodes, "gold.carrier_daily_performance")}
