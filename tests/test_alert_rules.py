"""Prometheus alerting rules: promtool check + unit tests; Grafana-managed rule structure."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from monitor import dashboards as dash

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "deploy" / "prometheus" / "anomon-rules.yml"
RULE_TESTS = sorted((REPO / "deploy" / "prometheus" / "tests").glob("*.yml"))
#: what issue 6 asks the rules to cover
REQUIRED = {"AnomonAnomalyDetected", "AnomonConsumerLagGrowing", "AnomonNoWindowsScored",
            "AnomonDeadLetterRateHigh", "AnomonModelNotLoaded"}


def test_rules_cover_the_required_alerts():
    names = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert REQUIRED <= names
    assert len({r.uid for r in dash.ALERT_RULES}) == len(dash.ALERT_RULES)


def test_promtool_check_rules(promtool):
    out = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(dash.ALERT_RULES)} rules found" in out.stdout


def test_promtool_unit_tests_including_anomaly_burst(promtool):
    assert RULE_TESTS, "no promtool rule tests found"
    text = "".join(p.read_text() for p in RULE_TESTS)
    for name in REQUIRED:  # every required alert has a firing case
        assert f"alertname: {name}" in text, name
    out = subprocess.run([promtool, "test", "rules", *map(str, RULE_TESTS)], capture_output=True, text=True,
                         timeout=120, cwd=RULE_TESTS[0].parent.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_grafana_managed_rules_match_prometheus_rules():
    prov = yaml.safe_load((REPO / "deploy/grafana/provisioning/alerting/anomon-rules.yml").read_text())
    assert prov["apiVersion"] == 1
    (group,) = prov["groups"]
    assert group["folder"] == dash.FOLDER_TITLE and group["interval"] == dash.RULE_GROUP_INTERVAL
    prom = {r["alert"]: r for r in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]}
    for rule in group["rules"]:
        # documented required fields of a provisioned rule
        for key in ("uid", "title", "condition", "data", "noDataState", "execErrState", "for"):
            assert key in rule, (rule["title"], key)
        refs = {d["refId"]: d for d in rule["data"]}
        assert rule["condition"] in refs
        a, b, c = refs["A"], refs["B"], refs["C"]
        assert a["datasourceUid"] == dash.DEFAULT_DATASOURCE_UID
        assert b["model"]["type"] == "reduce" and b["model"]["expression"] == "A"
        assert c["model"]["type"] == "threshold" and c["model"]["expression"] == "B"
        p = prom[rule["title"]]
        ev = c["model"]["conditions"][0]["evaluator"]
        op = {"gt": ">", "lt": "<"}[ev["type"]]
        # same query, comparison and `for` as the Prometheus rule
        assert p["expr"] == f"({a['model']['expr']}) {op} {ev['params'][0]:g}"
        assert p["for"] == rule["for"]
        assert p["labels"] == rule["labels"]
        # same text; Grafana's number is $values.B.Value (its $value is a string of all queries)
        assert {k: v.replace("$value", "$values.B.Value") for k, v in p["annotations"].items()} == rule["annotations"]
        assert not re.search(r"\$value\b", " ".join(rule["annotations"].values()))


def test_every_alert_is_documented_in_deploy_readme():
    doc = (REPO / "deploy" / "README.md").read_text()
    for r in dash.ALERT_RULES:
        assert f"`{r.name}`" in doc, r.name


def test_local_prometheus_loads_the_generated_rules():
    """LocalPrometheus(anomon_rules=True) (used by demos, no deploy/ checkout needed) loads every rule."""
    import requests

    from tests.fixtures.prometheus import need_binary

    binary = need_binary("prometheus")
    with dash.LocalPrometheus(["127.0.0.1:1"], anomon_rules=True, binary=binary) as p:
        groups = requests.get(p.url + "/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert {r["name"] for g in groups for r in g["rules"]} == {r.name for r in dash.ALERT_RULES}
