"""Dashboards as code: generated files are committed and current; structure and PromQL hygiene."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from monitor import dashboards as dash
from monitor.cli import main

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"


def test_committed_files_are_up_to_date():
    stale = [rel for rel, text in dash.generated_files().items()
             if not (DEPLOY / rel).is_file() or (DEPLOY / rel).read_text(encoding="utf-8") != text]
    assert not stale, f"regenerate with `anomon deploy dashboards --out deploy`: {stale}"


def test_cli_writes_the_same_files(tmp_path, capsys):
    assert main(["deploy", "dashboards", "--out", str(tmp_path)]) == 0
    for rel, text in dash.generated_files().items():
        assert (tmp_path / rel).read_text(encoding="utf-8") == text
    assert "anomon-fleet.json" in capsys.readouterr().out


@pytest.mark.parametrize("d", dash.dashboards(), ids=lambda d: d.uid)
def test_dashboard_structure(d):
    j = d.to_json()
    ids = [p["id"] for p in j["panels"]]
    assert len(ids) == len(set(ids))
    vars_ = {v["name"] for v in j["templating"]["list"]}
    assert "datasource" in vars_
    for p in j["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
            used = set(re.findall(r"\$(\w+)", t["expr"])) - {"__rate_interval", "__interval", "__range"}
            assert used <= vars_, (p["title"], used - vars_)
    # no two panels overlap
    cells = set()
    for p in j["panels"]:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, p["title"]
                cells.add((x, y))
    for a in j["annotations"]["list"][1:]:
        used = set(re.findall(r"\$(\w+)", a["expr"]))
        assert used <= vars_, (a["name"], used)


def test_required_panels_exist():
    fleet = {p.title for p in dash.fleet_dashboard().panels}
    for needle in ("Records consumed", "Consumer lag", "Alert events", "Dead-lettered", "latency", "Drift"):
        assert any(needle.lower() in t.lower() for t in fleet), needle
    model = dash.model_dashboard()
    titles = {p.title for p in model.panels}
    assert any("threshold" in t.lower() for t in titles) and any("Top anomalous" in t for t in titles)
    assert any("version" in a.name.lower() for a in model.annotations)


def test_query_names_are_unique():
    names = [w for w, _ in dash.all_queries()]
    assert len(names) == len(set(names))


def test_series_id_only_in_bounded_metrics():
    """PromQL may group by `series` only on the two bounded per-series metrics."""
    for where, expr in dash.all_queries():
        if re.search(r"\bseries\b", expr):
            assert re.search(r"anomon_(top_series_score|series_score)\b", expr), where


def test_expand_variables():
    assert dash.expand('x{a=~"$model", b=~"${job}"}[$__rate_interval]', {"model": "vrae"}, "5s") == \
        'x{a=~"vrae", b=~".*"}[5s]'


def test_dashboard_json_is_valid_json_with_schema():
    for f in (DEPLOY / "grafana" / "dashboards").glob("*.json"):
        j = json.loads(f.read_text())
        assert j["schemaVersion"] == dash.SCHEMA_VERSION and j["uid"] == f.stem
