"""Lineage derived from the declarations; docs/lineage.md is the generated page, kept current."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from lake.cli import app
from lake.lineage import DOC_PATH, MODEL, Asset, downstream, graph, mermaid, render_doc, upstream
from lake.settings import REPO_ROOT, Settings
from lake.tables import registry


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
    """The model, its predictions and the endpoints come from ray_jobs/ and the Serve config."""
    from ray_jobs import score, train

    nodes = graph(settings)
    model = nodes[MODEL]
    assert (model.kind, model.inputs) == ("model", tuple(train.PINNED_TABLES))
    assert nodes[score.TABLE].inputs[0] == MODEL
    apps = {app["name"]: app for app in yaml.safe_load((REPO_ROOT / settings.serve.config_file).read_text())["applications"]}
    assert {n for n, a in nodes.items() if a.kind == "endpoint"} == {f"endpoint.{name}" for name in apps} == {
        "endpoint.data", "endpoint.model",
    }  # fmt: skip
    assert nodes["endpoint.model"].inputs == (MODEL,)
    assert set(nodes["endpoint.data"].inputs) == {t.fqn for t in registry().values() if t.layer == "gold"}

    # Gold reaches the data endpoint; the feature tables reach the model and the model endpoint.
    assert downstream(nodes, "gold.carrier_daily_performance") == [(1, "endpoint.data")]
    down = {name for _, name in downstream(nodes, "gold.carrier_route_features")}
    assert down == {MODEL, score.TABLE, "endpoint.model"}
    up = {name for _, name in upstream(nodes, "endpoint.model")}
    assert {MODEL, "gold.flight_features", "silver.flights", "bronze.weather", "source.flights", "source.flight_events"} <= up
    chart = mermaid(nodes)
    assert "gold_flight_features --> model_flight_delay" in chart and "model_flight_delay --> endpoint_model" in chart
    assert 'endpoint_model(["endpoint.model"])' in chart and 'model_flight_delay{{"model.flight_delay"}}' in chart


def test_cli_lineage_follows_gold_to_its_endpoint() -> None:
    result = CliRunner().invoke(app, ["lineage", "silver.weather"])
    assert result.exit_code == 0, result.output
    down = result.stdout.split("downstream:")[1]
    assert "model.flight_delay (model)" in down and "endpoint.model (endpoint)" in down
    assert "gold.delay_predictions (gold)" in down


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
