"""Grafana dashboards and alert rules as code.

A small *typed* builder (frozen dataclasses + enums) produces Grafana dashboard JSON
(schemaVersion 39, Grafana 10/11), Grafana file-provisioning YAML (datasource, dashboard
provider, Grafana-managed alert rules) and Prometheus alerting rules -- all from the same
Python definitions, so a PromQL expression exists in exactly one place:

* :func:`fleet_dashboard` -- fleet overview: health, throughput, Kafka lag, alerts over
  time, dead-letter rates, latency, drift, process resources;
* :func:`model_dashboard` -- per-model scores: score quantiles against thresholds, score
  heatmap, anomalous-window rate, top anomalous series, allow-listed series, model version
  changes as annotations;
* :data:`ALERT_RULES` -- anomaly alert, lag growing, no windows scored, DLQ rate, model not
  loaded, daemon down / not ready, reload failures, latency, drift.

:func:`write_all` writes everything under a directory (``anomon deploy dashboards --out
DIR``); the committed ``deploy/`` tree is its output (a test keeps them in sync).
:func:`render_png` draws the panels with matplotlib from the same queries against a live
Prometheus, for reports.

>>> d = fleet_dashboard()
>>> j = d.to_json()
>>> j["uid"], j["schemaVersion"], len(d.queries()) > 10
('anomon-fleet', 39, True)
>>> expand('rate(anomon_up{job=~"$job"}[$__rate_interval])', rate_interval="30s")
'rate(anomon_up{job=~".*"}[30s])'
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Sequence

import yaml

#: Datasource uid the provisioning files and Grafana-managed rules use.
DEFAULT_DATASOURCE_UID = "anomon-prometheus"
#: Folder (uid and title) the dashboards and Grafana-managed rules go to.
FOLDER_UID = "anomon"
FOLDER_TITLE = "anomon"
#: Rule group of the Grafana-managed rules and of the Prometheus rules.
RULE_GROUP = "anomon"
RULE_GROUP_INTERVAL = "1m"
SCHEMA_VERSION = 39

# ------------------------------------------------------------------------------------------
# typed builder
# ------------------------------------------------------------------------------------------


class PanelType(str, Enum):
    TIMESERIES = "timeseries"
    STAT = "stat"
    BARGAUGE = "bargauge"
    TABLE = "table"
    HEATMAP = "heatmap"


class Unit(str, Enum):
    SHORT = "short"
    PER_SECOND = "ops"  # "ops/sec"
    RECORDS_PER_SECOND = "rps"  # shown as "req/s"
    SECONDS = "s"
    BYTES = "bytes"
    PERCENT_UNIT = "percentunit"
    NONE = "none"


class Reducer(str, Enum):
    LAST = "last"
    MEAN = "mean"
    MAX = "max"


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False
    #: "time_series", "table" or "heatmap"
    format: str = "time_series"

    def to_json(self, ref_id: str, ds: dict[str, str]) -> dict[str, Any]:
        return {
            "datasource": ds,
            "editorMode": "code",
            "expr": self.expr,
            "format": self.format,
            "instant": self.instant,
            "range": not self.instant,
            "legendFormat": self.legend or "__auto",
            "refId": ref_id,
        }


@dataclass(frozen=True)
class Step:
    """A threshold step of a panel (colour from ``value`` on; ``None`` = base)."""

    color: str
    value: float | None = None


@dataclass(frozen=True)
class Panel:
    """A panel. ``width`` is in Grafana grid columns (24 per row)."""

    title: str
    type: PanelType
    targets: tuple[Target, ...]
    description: str = ""
    unit: Unit = Unit.SHORT
    width: int = 12
    height: int = 8
    steps: tuple[Step, ...] = ()
    stack: bool = False
    min: float | None = None
    log_scale: bool = False
    reducer: Reducer = Reducer.LAST

    def __post_init__(self) -> None:
        if not 1 <= self.width <= 24:
            raise ValueError(f"panel {self.title!r}: width must be 1..24")
        if not self.targets:
            raise ValueError(f"panel {self.title!r} has no query")
        if len(self.targets) > 26:
            raise ValueError(f"panel {self.title!r}: at most 26 queries")

    def to_json(self, panel_id: int, x: int, y: int, ds: dict[str, str]) -> dict[str, Any]:
        defaults: dict[str, Any] = {"unit": self.unit.value}
        if self.min is not None:
            defaults["min"] = self.min
        if self.steps:
            defaults["thresholds"] = {
                "mode": "absolute",
                "steps": [{"color": s.color, "value": s.value} for s in self.steps],
            }
        options: dict[str, Any] = {}
        if self.type == PanelType.TIMESERIES:
            defaults["custom"] = {
                "drawStyle": "line",
                "lineWidth": 1,
                "fillOpacity": 10,
                "showPoints": "never",
                "spanNulls": False,
                "stacking": {"mode": "normal" if self.stack else "none", "group": "A"},
                "scaleDistribution": {"type": "log", "log": 10} if self.log_scale else {"type": "linear"},
            }
            options = {
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                "tooltip": {"mode": "multi", "sort": "desc"},
            }
        elif self.type in (PanelType.STAT, PanelType.BARGAUGE):
            options = {
                "reduceOptions": {"calcs": [self.reducer.value], "fields": "", "values": False},
                "orientation": "horizontal" if self.type == PanelType.BARGAUGE else "auto",
            }
            if self.type == PanelType.STAT:
                options.update({"colorMode": "value", "graphMode": "area", "textMode": "auto"})
            else:
                options.update({"displayMode": "gradient", "showUnfilled": True})
        elif self.type == PanelType.TABLE:
            options = {"showHeader": True, "cellHeight": "sm"}
        elif self.type == PanelType.HEATMAP:
            options = {
                "calculate": False,
                "yAxis": {"axisPlacement": "left", "unit": self.unit.value},
                "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
                "cellGap": 1,
            }
        out: dict[str, Any] = {
            "id": panel_id,
            "type": self.type.value,
            "title": self.title,
            "description": self.description,
            "datasource": ds,
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": options,
            "targets": [t.to_json(chr(ord("A") + i), ds) for i, t in enumerate(self.targets)],
        }
        if self.type == PanelType.TABLE:
            out["transformations"] = [{"id": "organize", "options": {"excludeByName": {"Time": True}}}]
        return out


@dataclass(frozen=True)
class Row:
    """A collapsible row header; the panels after it belong to it."""

    title: str


@dataclass(frozen=True)
class Variable:
    """A query template variable over label values (multi-select, with "All" = ``.*``)."""

    name: str
    label: str
    metric: str
    label_name: str

    def to_json(self, ds: dict[str, str]) -> dict[str, Any]:
        q = f"label_values({self.metric}, {self.label_name})"
        return {
            "name": self.name,
            "label": self.label,
            "type": "query",
            "datasource": ds,
            "query": {"query": q, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1},
            "definition": q,
            "refresh": 2,
            "multi": True,
            "includeAll": True,
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "sort": 1,
            "hide": 0,
            "options": [],
        }


@dataclass(frozen=True)
class Annotation:
    """A Prometheus annotation query (events at the value's time with ``use_value_for_time``)."""

    name: str
    expr: str
    title: str
    text: str = ""
    color: str = "purple"
    use_value_for_time: bool = True

    def to_json(self, ds: dict[str, str]) -> dict[str, Any]:
        return {
            "name": self.name,
            "datasource": ds,
            "enable": True,
            "hide": False,
            "iconColor": self.color,
            "expr": self.expr,
            "step": "60s",
            "titleFormat": self.title,
            "textFormat": self.text,
            "tagKeys": "model,version",
            "useValueForTime": self.use_value_for_time,
            "target": {"expr": self.expr, "refId": "Anno"},
        }


Item = Panel | Row


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    items: tuple[Item, ...]
    variables: tuple[Variable, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    tags: tuple[str, ...] = ("anomon",)
    refresh: str = "10s"
    time_from: str = "now-1h"

    def __post_init__(self) -> None:
        if len(self.uid) > 40:
            raise ValueError("dashboard uid: at most 40 characters (Grafana's limit)")

    @property
    def panels(self) -> list[Panel]:
        return [p for p in self.items if isinstance(p, Panel)]

    def queries(self) -> list[tuple[str, str]]:
        """Every PromQL expression of the dashboard as ``(where, expr)``: panels, then annotations."""
        out = [(f"{self.uid}/{p.title}/{chr(65 + i)}", t.expr) for p in self.panels for i, t in enumerate(p.targets)]
        out += [(f"{self.uid}/annotation/{a.name}", a.expr) for a in self.annotations]
        return out

    def to_json(self) -> dict[str, Any]:
        ds = {"type": "prometheus", "uid": "${datasource}"}
        panels: list[dict[str, Any]] = []
        x = y = row_h = 0
        pid = 1
        for item in self.items:
            if isinstance(item, Row):
                if x:
                    y, x, row_h = y + row_h, 0, 0
                panels.append(
                    {"id": pid, "type": "row", "title": item.title, "collapsed": False,
                     "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []}
                )
                y += 1
            else:
                if x + item.width > 24:
                    y, x, row_h = y + row_h, 0, 0
                panels.append(item.to_json(pid, x, y, ds))
                x += item.width
                row_h = max(row_h, item.height)
            pid += 1
        templating = [
            {
                "name": "datasource",
                "label": "Prometheus",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
                "refresh": 1,
                "options": [],
                "regex": "",
            }
        ] + [v.to_json(ds) for v in self.variables]
        annotations = [
            {
                "builtIn": 1,
                "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True,
                "hide": True,
                "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts",
                "type": "dashboard",
            }
        ] + [a.to_json(ds) for a in self.annotations]
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "timezone": "browser",
            "editable": True,
            "graphTooltip": 1,
            "refresh": self.refresh,
            "schemaVersion": SCHEMA_VERSION,
            "time": {"from": self.time_from, "to": "now"},
            "timepicker": {},
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "links": [],
            "annotations": {"list": annotations},
            "templating": {"list": templating},
            "panels": panels,
        }


# ------------------------------------------------------------------------------------------
# PromQL helpers
# ------------------------------------------------------------------------------------------

_SEL = 'job=~"$job", instance=~"$instance"'
_MSEL = _SEL + ', model=~"$model"'
_RI = "$__rate_interval"


def _rate(metric: str, sel: str = _SEL, by: str = "", window: str = _RI) -> str:
    inner = f"rate({metric}{{{sel}}}[{window}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def _quantile(q: float, metric: str, by: str = "", sel: str = _SEL) -> str:
    by_ = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({by_}) (rate({metric}_bucket{{{sel}}}[{_RI}])))"


def expand(expr: str, variables: dict[str, str] | None = None, rate_interval: str = "1m",
           interval: str = "15s", range_: str = "1h") -> str:
    """Expand Grafana's template variables the way Grafana would, for evaluating queries directly.

    Unset dashboard variables mean "All" (``.*``).
    """
    variables = variables or {}
    out = expr.replace("$__rate_interval", rate_interval).replace("$__interval", interval)
    out = out.replace("$__range", range_)

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return variables.get(name, ".*")

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, out)


# ------------------------------------------------------------------------------------------
# dashboards
# ------------------------------------------------------------------------------------------

_JOB = Variable("job", "Job", "anomon_up", "job")
_INSTANCE = Variable("instance", "Instance", 'anomon_up{job=~"$job"}', "instance")
_MODEL = Variable("model", "Model", 'anomon_model_loaded{job=~"$job"}', "model")
_COMPONENT = Variable("component", "Score component", 'anomon_threshold{model=~"$model"}', "component")

_GREEN_RED = (Step("red"), Step("green", 1))
_OK_WARN = (Step("green"), Step("red", 1))



def model_version_annotation(sel: str) -> Annotation:
    """Model (re)loads as annotation events at the load time, titled with the new version."""
    return Annotation(
        name="Model version changes",
        expr=(
            f"anomon_model_load_timestamp_seconds{{{sel}}} * 1000"
            " * on (job, instance, model) group_left (version) "
            f"anomon_model_info{{{sel}}}"
        ),
        title="{{model}} loaded: version {{version}}",
        text="{{instance}}",
    )


def fleet_dashboard() -> Dashboard:
    """Fleet overview: health, throughput, lag, alerts, dead letters, latency, drift, resources."""
    S = _SEL
    items: list[Item] = [
        Row("Health"),
        Panel("Daemons up", PanelType.STAT, (Target(f"sum(anomon_up{{{S}}})"),), width=4, height=4,
              description="Processes exposing anomon_up=1.", steps=_GREEN_RED),
        Panel("Ready", PanelType.STAT, (Target(f"sum(anomon_ready{{{S}}})"),), width=4, height=4,
              description="Processes whose /readyz is OK (model loaded, broker connected).", steps=_GREEN_RED),
        Panel("Models loaded", PanelType.STAT, (Target(f"sum(anomon_model_loaded{{{S}}})"),), width=4, height=4,
              steps=_GREEN_RED),
        Panel("Series in alert", PanelType.STAT, (Target(f"sum(anomon_alerts_active{{{S}}})"),), width=4,
              height=4, steps=_OK_WARN),
        Panel("Total consumer lag", PanelType.STAT, (Target(f"sum(anomon_consumer_lag{{{S}}})"),), width=4,
              height=4, unit=Unit.SHORT),
        Panel("Series tracked", PanelType.STAT, (Target(f"sum(anomon_series_tracked{{{S}}})"),), width=4,
              height=4),
        Row("Throughput"),
        Panel("Records consumed / s", PanelType.TIMESERIES,
              (Target(_rate("anomon_records_consumed_total", by="topic"), "{{topic}}"),),
              unit=Unit.RECORDS_PER_SECOND, width=8, stack=True),
        Panel("Windows scored / s", PanelType.TIMESERIES,
              (Target(_rate("anomon_windows_scored_total", by="model"), "{{model}}"),),
              unit=Unit.PER_SECOND, width=8, stack=True),
        Panel("Records produced / s", PanelType.TIMESERIES,
              (Target(_rate("anomon_records_produced_total", by="topic"), "{{topic}}"),),
              unit=Unit.RECORDS_PER_SECOND, width=8, stack=True,
              description="Scores, alerts and dead letters written to Kafka."),
        Row("Kafka"),
        Panel("Consumer lag per partition", PanelType.TIMESERIES,
              (Target(f"sum by (topic, partition) (anomon_consumer_lag{{{S}}})", "{{topic}}[{{partition}}]"),),
              description="Fetch high-water mark minus position, per assigned partition.", width=12),
        Panel("Lag growth (records / s)", PanelType.TIMESERIES,
              (Target(f"sum by (topic) (deriv(anomon_consumer_lag{{{S}}}[5m]))", "{{topic}}"),),
              description="Positive for long = the daemon falls behind its input.", width=12,
              unit=Unit.PER_SECOND),
        Row("Alerts and dead letters"),
        Panel("Alert events / min", PanelType.TIMESERIES,
              (Target(f"60 * {_rate('anomon_alerts_total', by='model, event')}", "{{model}} {{event}}"),),
              width=8, description="Per-series anomaly alerts starting and ending."),
        Panel("Series in alert over time", PanelType.TIMESERIES,
              (Target(f"sum by (model) (anomon_alerts_active{{{S}}})", "{{model}}"),), width=8),
        Panel("Dead-lettered records / s by reason", PanelType.TIMESERIES,
              (Target(_rate("anomon_dead_letter_records_total", by="reason"), "{{reason}}"),),
              unit=Unit.RECORDS_PER_SECOND, width=8, stack=True),
        Panel("Anomalous window ratio", PanelType.TIMESERIES,
              (Target(f"{_rate('anomon_windows_anomalous_total', by='model')} / "
                      f"{_rate('anomon_windows_scored_total', by='model')}", "{{model}}"),),
              unit=Unit.PERCENT_UNIT, width=12, min=0),
        Panel("Dead-letter ratio", PanelType.TIMESERIES,
              (Target(f"sum(rate(anomon_dead_letter_records_total{{{S}}}[{_RI}])) / "
                      f"sum(rate(anomon_records_consumed_total{{{S}}}[{_RI}]))", "dead-lettered / consumed"),),
              unit=Unit.PERCENT_UNIT, width=12, min=0),
        Row("Latency"),
        Panel("Produce → score latency", PanelType.TIMESERIES,
              (Target(_quantile(0.5, "anomon_produce_to_score_seconds"), "p50"),
               Target(_quantile(0.99, "anomon_produce_to_score_seconds"), "p99")),
              unit=Unit.SECONDS, width=8,
              description="From the Kafka timestamp of a window's last record to its score record."),
        Panel("Batch scoring latency", PanelType.TIMESERIES,
              (Target(_quantile(0.5, "anomon_batch_scoring_seconds", by="model"), "p50 {{model}}"),
               Target(_quantile(0.99, "anomon_batch_scoring_seconds", by="model"), "p99 {{model}}")),
              unit=Unit.SECONDS, width=8),
        Panel("Windows per batch (mean)", PanelType.TIMESERIES,
              (Target(f"{_rate('anomon_batch_windows_sum', by='model')} / "
                      f"{_rate('anomon_batch_windows_count', by='model')}", "{{model}}"),), width=8),
        Row("Drift and models"),
        Panel("Drift events", PanelType.TIMESERIES,
              (Target(f"sum by (model, component) (increase(anomon_drift_events_total{{{S}}}[5m]))",
                      "{{model}} {{component}}"),),
              width=8, description="ADWIN drift detections on the score stream (per 5 min)."),
        Panel("Model reloads and failures", PanelType.TIMESERIES,
              (Target(f"sum by (model) (increase(anomon_model_reloads_total{{{S}}}[5m]))", "reloads {{model}}"),
               Target(f"sum by (model) (increase(anomon_model_reload_failures_total{{{S}}}[5m]))",
                      "failures {{model}}"),
               Target(f"sum by (model, outcome) (increase(anomon_retrains_total{{{S}}}[5m]))",
                      "retrain {{outcome}} {{model}}")),
              width=8, description="Hot reloads (a new version in the model dir or a registry promotion), failed "
              "reloads, and retrains from inside the daemon ([retrain]) by outcome."),
        Panel("Models serving", PanelType.TABLE,
              (Target(f"anomon_model_info{{{S}}}", instant=True, format="table"),), width=8),
        Row("Process"),
        Panel("Resident memory", PanelType.TIMESERIES,
              (Target(f"process_resident_memory_bytes{{{S}}}", "{{instance}}"),), unit=Unit.BYTES, width=12),
        Panel("CPU (cores)", PanelType.TIMESERIES,
              (Target(f"rate(process_cpu_seconds_total{{{S}}}[{_RI}])", "{{instance}}"),), width=12),
    ]
    return Dashboard(
        uid="anomon-fleet",
        title="anomon / Fleet overview",
        description="Throughput, Kafka lag, alerts, dead letters, latency and drift of every anomon daemon.",
        items=tuple(items),
        variables=(_JOB, _INSTANCE),
        annotations=(model_version_annotation(_SEL),),
    )


def model_dashboard() -> Dashboard:
    """Per-model scores: distributions vs thresholds, top anomalous series, version annotations."""
    M = _MSEL
    MC = M + ', component=~"$component"'
    items: list[Item] = [
        Row("Scores against thresholds"),
        Panel("Score quantiles vs threshold", PanelType.TIMESERIES,
              (Target(_quantile(0.5, "anomon_score", by="model, component", sel=MC), "p50 {{model}}/{{component}}"),
               Target(_quantile(0.99, "anomon_score", by="model, component", sel=MC),
                      "p99 {{model}}/{{component}}"),
               Target(f"max by (model, component) (anomon_threshold{{{MC}}})",
                      "threshold {{model}}/{{component}}")),
              width=16, height=10, log_scale=True,
              description="Score distribution (from the anomon_score histogram) and the current "
              "SPOT-adapted threshold. Quantiles are interpolated inside log-spaced buckets."),
        Panel("Current threshold", PanelType.STAT,
              (Target(f"max by (model, component) (anomon_threshold{{{MC}}})", "{{model}}/{{component}}"),),
              width=8, height=10),
        Panel("Score distribution (heatmap)", PanelType.HEATMAP,
              (Target(f"sum by (le) (increase(anomon_score_bucket{{{MC}}}[{_RI}]))", "{{le}}",
                      format="heatmap"),),
              width=12, height=9),
        Panel("Fraction of windows above threshold", PanelType.TIMESERIES,
              (Target(f"{_rate('anomon_windows_anomalous_total', sel=M, by='model')} / "
                      f"{_rate('anomon_windows_scored_total', sel=M, by='model')}", "{{model}}"),),
              unit=Unit.PERCENT_UNIT, width=12, height=9, min=0),
        Row("Anomalous series"),
        Panel("Top anomalous series (max score, last minutes)", PanelType.BARGAUGE,
              (Target(f"sort_desc(max by (model, series) (anomon_top_series_score{{{M}}}))",
                      "{{series}} ({{model}})", instant=True),),
              width=12, height=10,
              description="Bounded top-K gauge kept by the daemon (K = metrics.top_k)."),
        Panel("Top anomalous series over time", PanelType.TIMESERIES,
              (Target(f"max by (series) (anomon_top_series_score{{{M}}})", "{{series}}"),), width=12, height=10),
        Panel("Allow-listed series", PanelType.TIMESERIES,
              (Target(f"max by (series, component) (anomon_series_score{{{MC}}})", "{{series}} {{component}}"),),
              width=24, description="Series listed in metrics.series_allowlist (bounded, user-configured)."),
        Row("Alerts, drift, model"),
        Panel("Alert starts / min", PanelType.TIMESERIES,
              (Target(f"60 * sum by (model) (rate(anomon_alerts_total{{{M}, event=\"start\"}}[{_RI}]))",
                      "{{model}}"),), width=8),
        Panel("Drift events (per 5 min)", PanelType.TIMESERIES,
              (Target(f"sum by (model, component) (increase(anomon_drift_events_total{{{M}}}[5m]))",
                      "{{model}}/{{component}}"),), width=8),
        Panel("Model version", PanelType.TABLE,
              (Target(f"anomon_model_info{{{M}}}", instant=True, format="table"),), width=8),
    ]
    return Dashboard(
        uid="anomon-model",
        title="anomon / Model scores",
        description="Per-model score distributions against thresholds, top anomalous series, model versions.",
        items=tuple(items),
        variables=(_JOB, _INSTANCE, _MODEL, _COMPONENT),
        annotations=(model_version_annotation(_MSEL),),
    )


def dashboards() -> list[Dashboard]:
    """All dashboards, in file order."""
    return [fleet_dashboard(), model_dashboard()]


# ------------------------------------------------------------------------------------------
# alert rules (one definition -> Prometheus rule + Grafana-managed rule)
# ------------------------------------------------------------------------------------------

_OPS = {">": "gt", "<": "lt"}


@dataclass(frozen=True)
class AlertRule:
    """An alert: fires while ``query op threshold`` holds for ``for_``.

    ``query`` is a PromQL expression that returns data whenever the daemon runs (the
    live test requires it); the comparison is what turns it into an alert.
    """

    uid: str
    name: str
    query: str
    op: str
    threshold: float
    for_: str
    severity: str
    summary: str
    description: str

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"rule {self.name}: op must be one of {sorted(_OPS)}")
        if len(self.uid) > 40:
            raise ValueError(f"rule {self.name}: uid at most 40 characters")

    @property
    def expr(self) -> str:
        return f"({self.query}) {self.op} {self.threshold:g}"

    def prometheus(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity, "service": "anomon"},
            "annotations": {"summary": self.summary, "description": self.description},
        }

    def grafana_annotations(self) -> dict[str, str]:
        """Annotations for Grafana-managed rules: Grafana's ``$value`` is a string of every query's
        labels and values, so the number is ``$values.B.Value`` (B = the reduced query)."""
        return {k: re.sub(r"\$value\b", "$values.B.Value", v)
                for k, v in {"summary": self.summary, "description": self.description}.items()}

    def grafana(self, datasource_uid: str, folder_uid: str = FOLDER_UID, group: str = RULE_GROUP,
                org_id: int = 1) -> dict[str, Any]:
        """The rule in the provisioning HTTP API's ``ProvisionedAlertRule`` JSON form."""
        return {
            "uid": self.uid,
            "orgID": org_id,
            "folderUID": folder_uid,
            "ruleGroup": group,
            "title": self.name,
            "condition": "C",
            "data": self._grafana_data(datasource_uid),
            "noDataState": "OK",
            "execErrState": "Error",
            "for": self.for_,
            "annotations": self.grafana_annotations(),
            "labels": {"severity": self.severity, "service": "anomon"},
            "isPaused": False,
        }

    def _grafana_data(self, datasource_uid: str) -> list[dict[str, Any]]:
        expr_ds = "__expr__"
        return [
            {
                "refId": "A",
                "relativeTimeRange": {"from": 600, "to": 0},
                "datasourceUid": datasource_uid,
                "model": {"refId": "A", "expr": self.query, "instant": True, "range": False,
                          "intervalMs": 1000, "maxDataPoints": 43200},
            },
            {
                "refId": "B",
                "relativeTimeRange": {"from": 0, "to": 0},
                "datasourceUid": expr_ds,
                "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": "last",
                          "datasource": {"type": "__expr__", "uid": expr_ds}},
            },
            {
                "refId": "C",
                "relativeTimeRange": {"from": 0, "to": 0},
                "datasourceUid": expr_ds,
                "model": {
                    "refId": "C", "type": "threshold", "expression": "B",
                    "datasource": {"type": "__expr__", "uid": expr_ds},
                    "conditions": [{"type": "query", "evaluator": {"type": _OPS[self.op], "params": [self.threshold]}}],
                },
            },
        ]

    def grafana_file(self, datasource_uid: str) -> dict[str, Any]:
        """The rule in Grafana's file-provisioning form (inside a group)."""
        return {
            "uid": self.uid,
            "title": self.name,
            "condition": "C",
            "data": self._grafana_data(datasource_uid),
            "noDataState": "OK",
            "execErrState": "Error",
            "for": self.for_,
            "annotations": self.grafana_annotations(),
            "labels": {"severity": self.severity, "service": "anomon"},
            "isPaused": False,
        }


_UP_ZERO = "sum by (job, instance) (anomon_up) * 0"

ALERT_RULES: tuple[AlertRule, ...] = (
    AlertRule(
        uid="anomon-anomaly", name="AnomonAnomalyDetected",
        query="sum by (job, model) (anomon_alerts_active)", op=">", threshold=0, for_="0s", severity="warning",
        summary="Anomaly: {{ $value }} series of model {{ $labels.model }} in alert",
        description="anomon opened per-series anomaly alerts (see the alerts topic for which series). "
        "Dashboard: anomon / Model scores.",
    ),
    AlertRule(
        uid="anomon-lag-growing", name="AnomonConsumerLagGrowing",
        query="sum by (job, topic) (deriv(anomon_consumer_lag[10m]))", op=">", threshold=10, for_="15m",
        severity="warning",
        summary="Consumer lag on {{ $labels.topic }} grows by {{ $value | humanize }} records/s",
        description="The daemons fall behind their input for 15 min: add processes to the consumer group "
        "(up to the partition count) or lower the input rate.",
    ),
    AlertRule(
        uid="anomon-no-windows", name="AnomonNoWindowsScored",
        query=f"sum by (job, instance) (rate(anomon_windows_scored_total[5m])) or {_UP_ZERO}", op="<",
        threshold=1e-9, for_="10m", severity="critical",
        summary="{{ $labels.instance }} scored no window for 10 min",
        description="The daemon is up but scores nothing: input stalled, no partitions assigned, or scoring stuck. "
        "Check the logs, lag and /readyz.",
    ),
    AlertRule(
        uid="anomon-dlq-rate", name="AnomonDeadLetterRateHigh",
        query="(sum by (job) (rate(anomon_dead_letter_records_total[5m])) or sum by (job) (anomon_up) * 0)"
        " / (sum by (job) (rate(anomon_records_consumed_total[5m])) > 0)",
        op=">", threshold=0.01, for_="5m", severity="warning",
        summary="{{ $value | humanizePercentage }} of input records are dead-lettered",
        description="More than 1% of the records go to the dead-letter topic (reason in the "
        "anomon_dead_letter_records_total{reason} label and the record header): check the producers' schema.",
    ),
    AlertRule(
        uid="anomon-model-not-loaded", name="AnomonModelNotLoaded",
        query=f"min by (job, instance) (anomon_model_loaded) or {_UP_ZERO}", op="<", threshold=1, for_="1m",
        severity="critical",
        summary="{{ $labels.instance }} has no model loaded",
        description="No model serves: the model file is missing, corrupt or incompatible. Windows are not scored.",
    ),
    AlertRule(
        uid="anomon-down", name="AnomonDown",
        query='min by (job, instance) (up{job=~"anomon.*"})', op="<", threshold=1, for_="2m", severity="critical",
        summary="anomon target {{ $labels.instance }} is down",
        description="Prometheus cannot scrape the daemon's /metrics.",
    ),
    AlertRule(
        uid="anomon-not-ready", name="AnomonNotReady",
        query="min by (job, instance) (anomon_ready)", op="<", threshold=1, for_="5m", severity="warning",
        summary="{{ $labels.instance }} not ready for 5 min",
        description="/readyz fails: the broker is unreachable, no model, or no partition assigned.",
    ),
    AlertRule(
        uid="anomon-reload-failed", name="AnomonModelReloadFailed",
        query="sum by (job, instance, model) (increase(anomon_model_reload_failures_total[15m]))",
        op=">", threshold=0, for_="0s", severity="warning",
        summary="Model {{ $labels.model }} failed to reload on {{ $labels.instance }}",
        description="A hot reload failed; the previous model keeps serving. See the daemon log.",
    ),
    AlertRule(
        uid="anomon-retrain-not-promoted", name="AnomonRetrainNotPromoted",
        query='sum by (job, instance, model, outcome) (increase(anomon_retrains_total{outcome=~"refused|failed"}[6h]))',
        op=">", threshold=0, for_="0s", severity="info",
        summary="A retrain of {{ $labels.model }} was {{ $labels.outcome }} on {{ $labels.instance }}",
        description="The daemon's retrain did not promote a candidate; the previous version keeps serving. "
        "The reason is in the daemon log and in the registry (anomon models show NAME).",
    ),
    AlertRule(
        uid="anomon-latency-high", name="AnomonScoringLatencyHigh",
        query="histogram_quantile(0.99, sum by (job, le) (rate(anomon_produce_to_score_seconds_bucket[5m])))",
        op=">", threshold=5, for_="10m", severity="warning",
        summary="p99 produce-to-score latency is {{ $value | humanizeDuration }}",
        description="Windows are scored late: the daemon is overloaded or the batch wait is too long.",
    ),
    AlertRule(
        uid="anomon-drift", name="AnomonScoreDrift",
        query="sum by (job, model, component) (increase(anomon_drift_events_total[15m]))",
        op=">", threshold=0, for_="0s", severity="info",
        summary="Score drift on {{ $labels.model }}/{{ $labels.component }}",
        description="ADWIN detected a change in the score distribution: the data changed, "
        "consider retraining or recalibrating.",
    ),
)


def prometheus_rules() -> dict[str, Any]:
    """The Prometheus alerting rules file (``deploy/prometheus/anomon-rules.yml``)."""
    return {"groups": [{"name": RULE_GROUP, "rules": [r.prometheus() for r in ALERT_RULES]}]}


def grafana_alert_provisioning(datasource_uid: str = DEFAULT_DATASOURCE_UID) -> dict[str, Any]:
    """Grafana-managed alert rules in the file-provisioning format (``provisioning/alerting/``)."""
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": RULE_GROUP,
                "folder": FOLDER_TITLE,
                "interval": RULE_GROUP_INTERVAL,
                "rules": [r.grafana_file(datasource_uid) for r in ALERT_RULES],
            }
        ],
    }


def grafana_datasource_provisioning(url: str = "http://prometheus:9090",
                                    datasource_uid: str = DEFAULT_DATASOURCE_UID) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus (anomon)",
                "type": "prometheus",
                "uid": datasource_uid,
                "access": "proxy",
                "url": url,
                "isDefault": True,
                "editable": False,
                "jsonData": {"timeInterval": "5s"},
            }
        ],
    }


def grafana_dashboard_provisioning(path: str = "/var/lib/grafana/dashboards/anomon") -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "anomon",
                "orgId": 1,
                "folder": FOLDER_TITLE,
                "folderUid": FOLDER_UID,
                "type": "file",
                "disableDeletion": False,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 30,
                "options": {"path": path, "foldersFromFilesStructure": False},
            }
        ],
    }


def all_queries() -> list[tuple[str, str]]:
    """Every PromQL expression anomon ships: dashboard panels, annotations, alert-rule queries."""
    out: list[tuple[str, str]] = []
    for d in dashboards():
        out += d.queries()
    out += [(f"rule/{r.name}", r.query) for r in ALERT_RULES]
    return out


# ------------------------------------------------------------------------------------------
# writing files
# ------------------------------------------------------------------------------------------

_HEADER = "# Generated by `anomon deploy dashboards` from monitor/dashboards.py -- do not edit by hand.\n"


def _yaml(obj: Any) -> str:
    return _HEADER + yaml.safe_dump(obj, sort_keys=False, width=120, allow_unicode=True)


def generated_files(datasource_uid: str = DEFAULT_DATASOURCE_UID) -> dict[str, str]:
    """Relative path -> file content, for everything :func:`write_all` writes."""
    files = {
        f"grafana/dashboards/{d.uid}.json": json.dumps(d.to_json(), indent=2, ensure_ascii=False) + "\n"
        for d in dashboards()
    }
    files["grafana/provisioning/datasources/anomon.yml"] = _yaml(grafana_datasource_provisioning(
        datasource_uid=datasource_uid))
    files["grafana/provisioning/dashboards/anomon.yml"] = _yaml(grafana_dashboard_provisioning())
    files["grafana/provisioning/alerting/anomon-rules.yml"] = _yaml(grafana_alert_provisioning(datasource_uid))
    files["prometheus/anomon-rules.yml"] = _yaml(prometheus_rules())
    return files


def write_all(out_dir: str | Path, datasource_uid: str = DEFAULT_DATASOURCE_UID) -> list[Path]:
    """Write dashboards JSON, Grafana provisioning YAML and Prometheus rules under ``out_dir``."""
    out = Path(out_dir)
    written = []
    for rel, text in generated_files(datasource_uid).items():
        p = out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
        written.append(p)
    return written


# ------------------------------------------------------------------------------------------
# rendering (PNG panels from a live Prometheus, for HTML reports)
# ------------------------------------------------------------------------------------------


class LocalPrometheus:
    """A throw-away Prometheus (the system's ``prometheus`` binary) on a free loopback port.

    For the demo and tests: scrapes ``targets`` (``host:port``) as job ``job`` every
    ``scrape_interval``, evaluates ``rule_files`` (``anomon_rules=True``: also anomon's own alert
    rules, generated into the temp dir -- no deploy/ checkout needed), keeps its TSDB in a temp
    dir removed at :meth:`stop`. A context manager. :meth:`find_binary` returns None when
    Prometheus is not installed (Debian: ``apt-get install prometheus``).

    For a demo report::

        if LocalPrometheus.find_binary():
            with LocalPrometheus([f"127.0.0.1:{http_port}"], anomon_rules=True) as prom:
                ...  # run the daemon and the replay
                add_to_report(report, prom.url, out_dir / "dashboards", minutes=5, rate_interval="10s")
    """

    def __init__(self, targets: Sequence[str], rule_files: Sequence[str | Path] = (), job: str = "anomon",
                 scrape_interval: str = "1s", evaluation_interval: str = "1s", binary: str | None = None,
                 anomon_rules: bool = False) -> None:
        import socket
        import tempfile

        self.binary = binary or self.find_binary()
        if self.binary is None:
            raise FileNotFoundError("prometheus is not installed (Debian: apt-get install prometheus)")
        self.dir = Path(tempfile.mkdtemp(prefix="anomon-prom-"))
        with socket.socket() as sk:
            sk.bind(("127.0.0.1", 0))
            self.port = sk.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        rules = [str(Path(r).resolve()) for r in rule_files]
        if anomon_rules:
            (self.dir / "anomon-rules.yml").write_text(_yaml(prometheus_rules()))
            rules.append(str(self.dir / "anomon-rules.yml"))
        cfg = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval,
                       "scrape_timeout": scrape_interval},
            "rule_files": rules,
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
        }
        self.config = self.dir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.log = self.dir / "prometheus.log"
        self.proc: Any = None

    @staticmethod
    def find_binary() -> str | None:
        import os
        import shutil

        found = shutil.which("prometheus")
        if found:
            return found
        return "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None

    def start(self, timeout: float = 30.0) -> "LocalPrometheus":
        import subprocess
        import time as _time

        import requests

        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(
                [self.binary, f"--config.file={self.config}", f"--storage.tsdb.path={self.dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1d",
                 "--log.level=warn"],
                stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = _time.monotonic() + timeout
        while _time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            _time.sleep(0.2)
        self.stop()
        raise RuntimeError("prometheus did not become ready in time")

    def stop(self) -> None:
        import shutil
        import subprocess

        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "LocalPrometheus":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _prom_get(prom_url: str, path: str, params: dict[str, Any], timeout: float = 10.0) -> Any:
    import requests

    r = requests.get(prom_url.rstrip("/") + path, params=params, timeout=timeout)
    r.raise_for_status()
    body = r.json()
    if body.get("status") != "success":
        raise RuntimeError(f"prometheus query failed: {body.get('error')}")
    return body["data"]


def _legend(fmt: str, labels: dict[str, str]) -> str:
    if not fmt or fmt == "__auto":
        return ", ".join(f"{k}={v}" for k, v in labels.items() if k != "__name__") or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def render_png(
    dashboard: Dashboard,
    prom_url: str,
    out_dir: str | Path,
    *,
    minutes: float = 15.0,
    end: float | None = None,
    variables: dict[str, str] | None = None,
    rate_interval: str = "1m",
    columns: int = 2,
    per_panel: bool = True,
) -> list[Path]:
    """Draw every panel of ``dashboard`` with matplotlib from ``prom_url``'s data.

    Runs the panels' own PromQL (template variables expanded, "All" when unset) over the last
    ``minutes``: time series as lines (model-version annotations as dashed vertical lines),
    stats as numbers, bar gauges as horizontal bars, tables as tables, heatmaps as images.
    Writes ``<uid>.png`` with all panels on a grid and (``per_panel``) one PNG per panel;
    returns their paths (the grid first). A failing query is drawn as its error message,
    never raised. Each query runs once.
    """
    import time as _time

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    end = _time.time() if end is None else end
    ctx = _RenderCtx(prom_url, end - minutes * 60, end, max(1.0, minutes * 60 / 300), variables, rate_interval)
    ctx.events = _annotation_events(dashboard, ctx)
    panels = dashboard.panels
    rows = (len(panels) + columns - 1) // columns
    grid, axes = plt.subplots(rows, columns, figsize=(7 * columns, 3.2 * rows), squeeze=False)
    paths: list[Path] = []
    for i, panel in enumerate(panels):
        _draw_panel(axes[i // columns][i % columns], panel, ctx)
        if not per_panel:
            continue
        single, ax1 = plt.subplots(figsize=(7, 3.2))
        _draw_panel(ax1, panel, ctx)
        single.tight_layout()
        slug = re.sub(r"[^a-z0-9]+", "-", panel.title.lower()).strip("-")
        p = out / f"{dashboard.uid}-{i:02d}-{slug}.png"
        single.savefig(p, dpi=80)
        plt.close(single)
        paths.append(p)
    for j in range(len(panels), rows * columns):
        axes[j // columns][j % columns].axis("off")
    grid.suptitle(f"{dashboard.title}  (last {minutes:g} min)")
    grid.tight_layout()
    gp = out / f"{dashboard.uid}.png"
    grid.savefig(gp, dpi=70)
    plt.close(grid)
    return [gp, *paths]


def add_to_report(report: Any, prom_url: str, out_dir: str | Path, **kwargs: Any) -> list[Path]:
    """Render every dashboard (:func:`render_png`) and add each grid image to a
    :class:`monitor.report.Report` section. Returns the grid PNG paths."""
    grids = []
    report.heading("Dashboards (rendered from Prometheus)")
    report.text("Drawn with matplotlib from the same PromQL queries as the Grafana dashboards "
                f"(deploy/grafana/dashboards), against {prom_url}.")
    kwargs.setdefault("per_panel", False)
    for d in dashboards():
        gp = render_png(d, prom_url, out_dir, **kwargs)[0]
        report.image_png(gp.read_bytes(), caption=d.title)
        grids.append(gp)
    return grids


@dataclass
class _RenderCtx:
    prom_url: str
    start: float
    end: float
    step: float
    variables: dict[str, str] | None
    rate_interval: str
    events: list[tuple[float, str]] = field(default_factory=list)
    cache: dict[tuple[str, str], Any] = field(default_factory=dict)

    def q(self, expr: str) -> str:
        return expand(expr, self.variables, rate_interval=self.rate_interval)

    def range(self, expr: str) -> list[dict[str, Any]]:
        key = ("range", expr)
        if key not in self.cache:
            self.cache[key] = _prom_get(self.prom_url, "/api/v1/query_range", {
                "query": self.q(expr), "start": self.start, "end": self.end, "step": self.step})["result"]
        return self.cache[key]

    def instant(self, expr: str) -> list[dict[str, Any]]:
        key = ("instant", expr)
        if key not in self.cache:
            self.cache[key] = _prom_get(self.prom_url, "/api/v1/query",
                                        {"query": self.q(expr), "time": self.end})["result"]
        return self.cache[key]


def _annotation_events(dashboard: Dashboard, ctx: _RenderCtx) -> list[tuple[float, str]]:
    events: set[tuple[float, str]] = set()
    for a in dashboard.annotations:
        try:
            for series in ctx.range(a.expr):
                for _, v in series["values"]:
                    t = float(v) / 1000.0 if a.use_value_for_time else float(_)
                    if ctx.start <= t <= ctx.end:
                        events.add((t, _legend(a.title, series["metric"])))
        except Exception:  # annotations are decoration: never fail a render for them
            continue
    return sorted(events)


def _draw_panel(ax: Any, panel: Panel, ctx: _RenderCtx) -> None:
    import datetime as _dt

    import matplotlib.dates as mdates
    import numpy as np

    ax.set_title(panel.title, fontsize=9)
    ax.tick_params(labelsize=7)
    try:
        if panel.type == PanelType.HEATMAP:
            _draw_heatmap(ax, panel, ctx)
        elif panel.type == PanelType.TIMESERIES and not any(t.instant for t in panel.targets):
            n = 0
            for t in panel.targets:
                for series in ctx.range(t.expr)[:12]:
                    ts = np.array([float(x) for x, _ in series["values"]])
                    ys = np.array([float(v) for _, v in series["values"]])
                    # break the line where samples are missing
                    gaps = np.flatnonzero(np.diff(ts) > 1.5 * ctx.step)
                    ts = np.insert(ts, gaps + 1, ts[gaps] + ctx.step)
                    ys = np.insert(ys, gaps + 1, np.nan)
                    xs = [_dt.datetime.fromtimestamp(x) for x in ts]
                    ax.plot(xs, ys, lw=1, label=_legend(t.legend, series["metric"])[:40])
                    n += 1
            for t_ev, label in ctx.events:
                ax.axvline(_dt.datetime.fromtimestamp(t_ev), color="purple", ls="--", lw=0.8)
                ax.annotate(label[:30], (_dt.datetime.fromtimestamp(t_ev), 1.0), xycoords=("data", "axes fraction"),
                            fontsize=5, color="purple", rotation=90, va="top", ha="right")
            if panel.log_scale and n:
                lows = [y for line in ax.get_lines() for y in line.get_ydata() if np.isfinite(y)]
                if lows and min(lows) > 0:
                    ax.set_yscale("log")
                else:
                    ax.set_yscale("symlog", linthresh=1e-3)
                    ax.set_ylim(bottom=0)
            if n:
                ax.legend(fontsize=6, loc="upper left")
            else:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            ax.set_xlim(_dt.datetime.fromtimestamp(ctx.start), _dt.datetime.fromtimestamp(ctx.end))
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S" if ctx.end - ctx.start < 1200 else "%H:%M"))
        else:
            rows: list[tuple[dict[str, str], float, Target]] = []
            for t in panel.targets:
                rows += [(s["metric"], float(s["value"][1]), t) for s in ctx.instant(t.expr)[:15]]
            if not rows:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            elif panel.type == PanelType.STAT:
                ax.axis("off")
                txt = "\n".join(f"{v:.4g}" + (f"  {_legend(t.legend, m)}" if len(rows) > 1 else "")
                                for m, v, t in rows)
                ax.text(0.5, 0.5, txt, ha="center", va="center", fontsize=16 if len(rows) == 1 else 9,
                        transform=ax.transAxes)
            elif panel.type == PanelType.TABLE:
                ax.axis("off")
                cols = sorted({k for m, _, _ in rows for k in m if k not in ("__name__", "job")})
                cells = [[m.get(c, "") for c in cols] for m, _, _ in rows]
                tab = ax.table(cellText=cells, colLabels=cols, loc="center", cellLoc="left")
                tab.auto_set_font_size(False)
                tab.set_fontsize(6)
            else:
                labels = [_legend(t.legend, m)[:40] for m, _, t in rows]
                ax.barh(range(len(rows)), [v for _, v, _ in rows], color="tab:orange")
                ax.set_yticks(range(len(rows)), labels, fontsize=6)
                ax.invert_yaxis()
    except Exception as exc:  # a report shows the error instead of failing
        ax.text(0.5, 0.5, f"query failed: {exc}"[:80], ha="center", va="center", fontsize=7,
                transform=ax.transAxes)


def _draw_heatmap(ax: Any, panel: Panel, ctx: _RenderCtx) -> None:
    import numpy as np

    by_le = {}
    for s in ctx.range(panel.targets[0].expr):
        le = float(s["metric"].get("le", "nan"))
        by_le[le] = {float(ts): float(v) for ts, v in s["values"]}
    if not by_le:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    les = sorted(by_le)
    times = sorted({t for d in by_le.values() for t in d})
    cum = np.array([[by_le[le].get(t, 0.0) for t in times] for le in les])
    per_bucket = np.diff(np.vstack([np.zeros(len(times)), cum]), axis=0).clip(min=0)
    keep = per_bucket.sum(axis=1) > 0
    if not keep.any():
        ax.text(0.5, 0.5, "no observations", ha="center", va="center", transform=ax.transAxes)
        return
    rows = np.flatnonzero(keep)
    lo, hi = rows.min(), rows.max() + 1
    ax.imshow(per_bucket[lo:hi], aspect="auto", origin="lower", cmap="Oranges", interpolation="nearest")
    labels = [f"{le:g}" for le in les[lo:hi]]
    ticks = list(range(0, hi - lo, max(1, (hi - lo) // 6)))
    ax.set_yticks(ticks, [labels[i] for i in ticks], fontsize=6)
    ax.set_ylabel("score <= le", fontsize=7)
    ax.set_xlabel(f"last {(ctx.end - ctx.start) / 60:.0f} min", fontsize=7)
