"""Live check against Debian's Prometheus scraping the real daemon.

Two daemons score readings replayed into the embedded broker (session ``broker`` fixture),
each in its own consumer group: an ``anomon run --config FILE`` subprocess, and an
in-process one (monitor.runner.start_daemon: the same Daemon + HTTP server) whose metrics
carry a series allow-list (not yet a config setting). Prometheus (1 s scrape and rule
evaluation, loopback) scrapes both ``/metrics`` endpoints. Then:

* every PromQL expression of every dashboard panel, annotation and alert rule is evaluated
  through ``/api/v1/query`` and must return a finite sample (polled, no fixed sleeps);
* an injected anomaly burst fires ``AnomonAnomalyDetected`` (read from ``/api/v1/alerts``);
* the dashboards render to PNG from the same queries (``render_png``).
"""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pytest

from monitor import dashboards as dash
from tests.fixtures.prometheus import PrometheusServer, free_port, need_binary

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "deploy" / "prometheus" / "anomon-rules.yml"
#: Grafana's $__rate_interval is max(4 x scrape interval, step + scrape interval); with a 1 s
#: scrape and a 1 s evaluation that is 4-5 s -- 10 s leaves room for a loaded CI machine.
RATE_INTERVAL = "10s"
SERIES = ["ecg-a", "ecg-b", "ecg-c", "ecg-d"]
ALLOW = ["ecg-b"]

pytestmark = [pytest.mark.prometheus, pytest.mark.broker, pytest.mark.timeout(240)]


def has_data(result: list[dict]) -> bool:
    """At least one sample with a finite value."""
    for s in result:
        vals = [s["value"]] if "value" in s else s.get("values", [])
        if any(math.isfinite(float(v[1])) for v in vals):
            return True
    return False


class Replayer(threading.Thread):
    """Replays sine readings for SERIES continuously (~100 readings/s per series), plus one
    undecodable record per round (dead-lettered); ``burst`` shifts the first series by +6."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        from streams.kafka import KafkaSettings, Sink

        self.topic = topic
        self.sink = Sink(KafkaSettings(bootstrap_servers=bootstrap), linger_ms=5)
        self.stop_ev = threading.Event()
        self.burst = False
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        from tests.fixtures.daemon import produce_readings

        a, step = 0, 20
        try:
            while not self.stop_ev.is_set():
                anomaly = (a, a + step) if self.burst else None
                self.sent += produce_readings(None, self.topic, SERIES, a + step, start=a, anomaly=anomaly,
                                              sink=self.sink)
                self.sink.send(self.topic, b"{not json", key="broken")
                self.sink.flush()
                a += step
                self.stop_ev.wait(0.2)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def stop(self) -> None:
        self.stop_ev.set()
        self.join(10)
        self.sink.close()


@pytest.fixture(scope="module")
def live(broker, daemon_bundle, tmp_path_factory):
    """(daemon, replayer, prometheus) running for the whole module."""
    need_binary("prometheus")
    from prometheus_client import CollectorRegistry

    from monitor.metrics import AnomonMetrics
    from monitor.runner import start_daemon
    from streams.records import REASONS
    from tests.fixtures.daemon import DaemonProcess, daemon_config, write_config

    tmp = tmp_path_factory.mktemp("live")
    topic = f"live-{int(time.time() * 1000)}"
    port, sub_port = free_port(), free_port()
    common = dict(http__enabled=True, scoring__open_after=3, scoring__close_after=3)
    cfg = daemon_config(broker.bootstrap, topic, f"g-{topic}", daemon_bundle, http__port=port, **common)
    sub_cfg = daemon_config(broker.bootstrap, topic, f"g2-{topic}", daemon_bundle, http__port=sub_port,
                            output__scores_topic=f"{topic}.scores2", output__alerts_topic=f"{topic}.alerts2",
                            output__dlq_topic=f"{topic}.dlq2", **common)
    # the allow-list is a user setting; give one so the allow-listed panel has data
    metrics = AnomonMetrics(CollectorRegistry(), top_k=5, series_allowlist=ALLOW, dlq_reasons=REASONS)
    cleanup = []
    try:
        running = start_daemon(cfg, metrics=metrics)
        cleanup.append(lambda: running.stop(timeout=30))
        proc = DaemonProcess(write_config(tmp / "anomon.toml", sub_cfg), tmp / "anomon-run.log")
        cleanup.append(lambda: proc.terminate(timeout_s=30))
        replay = Replayer(broker.bootstrap, topic)
        replay.start()
        cleanup.append(replay.stop)
        prom = PrometheusServer([f"127.0.0.1:{port}", f"127.0.0.1:{sub_port}"], rule_files=[RULES])
        cleanup.append(prom.stop)
        prom.subprocess_target = f"127.0.0.1:{sub_port}"
        prom.daemon_log = proc.log
        prom.start()
        yield running, replay, prom
    finally:
        for fn in reversed(cleanup):
            fn()


def test_every_dashboard_and_rule_query_returns_data(live):
    running, replay, prom = live
    queries = dict((w, dash.expand(q, rate_interval=RATE_INTERVAL)) for w, q in dash.all_queries())
    pending = dict(queries)
    t0 = time.monotonic()

    def check() -> bool:
        assert replay.error is None, replay.error
        for where, q in list(pending.items()):
            if has_data(prom.query(q)):
                del pending[where]
        return not pending

    try:
        prom.wait_for(check, timeout=90, what="data for every query", poll=1.0)
    except AssertionError:
        raise AssertionError(f"{len(pending)} of {len(queries)} queries returned no data:\n"
                             + "\n".join(f"{w}: {q}" for w, q in pending.items())) from None
    print(f"\n{len(queries)} queries (panels, annotations, rules) returned data after "
          f"{time.monotonic() - t0:.1f}s; {replay.sent} records replayed")
    # the scrapes really are the daemons scoring the replay -- the `anomon run` process included
    sub = prom.subprocess_target
    up = prom.wait_for(lambda: prom.query(f'up{{instance="{sub}"}} == 1 and on (instance) '
                                          f'sum by (instance) (anomon_windows_scored_total{{instance="{sub}"}}) > 0'),
                       timeout=60, what=f"`anomon run` at {sub} scraped and scoring:\n{prom.daemon_log()[-3000:]}")
    assert up
    scored = prom.query('sum(anomon_windows_scored_total{job="anomon"})')
    assert float(scored[0]["value"][1]) > 0
    dlq = prom.query('sum(anomon_dead_letter_records_total{reason="undecodable"})')
    assert float(dlq[0]["value"][1]) > 0


def test_anomaly_burst_fires_the_anomaly_alert(live):
    running, replay, prom = live

    def firing():
        return [a for a in prom.firing_alerts() if a["labels"]["alertname"] == "AnomonAnomalyDetected"]

    assert not firing(), "anomaly alert firing before the burst"
    replay.burst = True
    try:
        alerts = prom.wait_for(firing, timeout=60, what="AnomonAnomalyDetected to fire")
    finally:
        replay.burst = False
    a = alerts[0]
    assert a["labels"]["severity"] == "warning" and a["labels"]["model"]
    assert float(a["value"]) >= 1
    top = prom.query('max by (series) (anomon_top_series_score{job="anomon"})')
    assert SERIES[0] in {s["metric"]["series"] for s in top}, "burst series not among the top-K"


def test_dashboards_render_to_png(live, tmp_path, capsys):
    from monitor.cli import main
    from monitor.report import Report

    running, replay, prom = live
    assert main(["deploy", "render", "--prometheus", prom.url, "--out", str(tmp_path), "--minutes", "1",
                 "--rate-interval", RATE_INTERVAL]) == 0
    assert "anomon-fleet.png" in capsys.readouterr().out
    for d in dash.dashboards():
        paths = sorted(tmp_path.glob(f"{d.uid}*.png"))
        assert len(paths) == len(d.panels) + 1
        for p in paths:
            assert p.stat().st_size > 2000, p
    report = Report("dashboards")
    grids = dash.add_to_report(report, prom.url, tmp_path / "report", minutes=1, rate_interval=RATE_INTERVAL)
    html = report.html()
    assert len(grids) == 2 and html.count("data:image/png;base64") >= 2
