"""The reports a person reads (``anomon train`` from a file and from a protocol, ``anomon evaluate``,
``anomon demo``), rendered in
headless Chromium (Debian's ``chromium``, installed by ``.ci/run``): every section is there, every
image decodes, nothing is wider than the page, and the screenshot is not blank.

Chromium missing: the tests skip with the reason, except in CI (``ANOMON_CI_STRICT=1``) where they fail.
The screenshots are kept under ``$ANOMON_REPORT_SHOTS`` when that is set (to look at them).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from monitor.cli import main

STRICT = os.environ.get("ANOMON_CI_STRICT") == "1"
WIDTH, HEIGHT = 1200, 2400

#: marks the page's render facts on a <div id="render-check"> once everything has loaded; added
#: to a copy of the report (the reports themselves carry no script)
CHECK_SCRIPT = """<script>
function anomonCheck(){
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function(i){return !i.complete || i.naturalWidth === 0;}).length;
  var d = document.createElement('div'); d.id = 'render-check';
  d.setAttribute('data-images', imgs.length); d.setAttribute('data-broken', broken);
  d.setAttribute('data-scroll-width', document.documentElement.scrollWidth);
  d.setAttribute('data-client-width', document.documentElement.clientWidth);
  document.body.appendChild(d);
}
if (document.readyState === 'complete') anomonCheck(); else window.addEventListener('load', anomonCheck);
</script>"""


def need_chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
    if path:
        return path
    msg = "chromium not installed (apt-get install chromium)"
    if STRICT:
        pytest.fail(msg + " -- required because ANOMON_CI_STRICT=1")
    pytest.skip(msg)


def _chromium(binary: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'chromium-profile'}", f"--window-size={WIDTH},{HEIGHT}",
           "--hide-scrollbars", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


def render(report: Path, tmp: Path, name: str) -> tuple[dict[str, int], str, np.ndarray]:
    """(render facts, the DOM after load, the screenshot as an (H, W, 3) array) of ``report``."""
    from PIL import Image

    binary = need_chromium()
    page = tmp / f"{name}-check.html"
    html = report.read_text()
    assert "</body>" in html
    page.write_text(html.replace("</body>", CHECK_SCRIPT + "</body>"))
    dom = _chromium(binary, tmp, "--virtual-time-budget=10000", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    m = re.search(r'<div id="render-check"([^>]*)>', dom.stdout)
    assert m, f"the check script did not run: {dom.stdout[-500:]!r}"
    facts = {k: int(v) for k, v in re.findall(r'data-([a-z-]+)="(\d+)"', m.group(1))}
    shot = tmp / f"{name}.png"
    r = _chromium(binary, tmp, f"--screenshot={shot}", report.as_uri())
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    keep = os.environ.get("ANOMON_REPORT_SHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    return facts, dom.stdout, np.asarray(Image.open(shot).convert("RGB"))


def check_report(report: Path, tmp: Path, name: str, sections: list[str], min_images: int) -> None:
    facts, dom, png = render(report, tmp, name)
    for s in sections:
        assert f'id="{s}"' in dom, f"{name}: section {s!r} missing"
    assert facts["images"] >= min_images, facts
    assert facts["broken"] == 0, f"{name}: {facts['broken']} image(s) did not decode"
    assert facts["scroll-width"] <= facts["client-width"], f"{name}: content wider than the page {facts}"
    assert "<pre>" not in dom, f"{name}: a raw dump in the report"
    assert 'href="' in dom and ".json" in dom, f"{name}: the JSON is not linked"
    assert png.shape[1] == WIDTH
    # nothing cut off at the right edge: the page's right margin is empty all the way down
    edge = (png[:, -6:] < 235).any(axis=2)
    assert not edge.any(), f"{name}: content reaches the right edge of the page at y={np.flatnonzero(edge.any(1))[:3]}"
    # not blank: plenty of non-white pixels, in more than a few colours, down the page
    ink = (png < 200).any(axis=2)
    assert ink.mean() > 0.02, f"{name}: screenshot nearly blank ({ink.mean():.4f} of pixels drawn)"
    assert len(np.unique(png.reshape(-1, 3)[::97], axis=0)) > 50
    assert ink[HEIGHT // 2:].mean() > 0.01, f"{name}: the lower half of the screenshot is blank"


# ---------------------------------------------------------------------------------------- train
def _labelled_csv(path: Path) -> Path:
    n, t0 = 1200, 1_700_000_000_000
    lines = ["ts,series,a,b,label"]
    for k, (sid, scale) in enumerate((("pump-a", 1.0), ("pump-b", 1000.0))):
        i = np.arange(n)
        a = np.sin(2 * np.pi * i / 16.0 + k) * scale
        v = np.stack([a, 0.5 * a + 0.05 * scale * np.cos(1.7 * i)], axis=1)
        for j in range(n):
            lab = int(300 <= j < 304 or 1100 <= j < 1104)
            x = v[j] + (6 * scale if lab else 0.0)
            lines.append(f"{t0 + 10 * j},{sid},{float(x[0])!r},{float(x[1])!r},{lab}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_report_renders(tmp_path):
    need_chromium()
    data = _labelled_csv(tmp_path / "readings.csv")
    out = tmp_path / "bundle"
    assert main(["train", "aae", "--data", str(data), "--time-col", "ts", "--value-cols", "a,b", "--series-col",
                 "series", "--label-col", "label", "--window", "32", "--stride", "8", "--epochs", "3",
                 "--out", str(out)]) == 0
    info = json.loads((out / "train.json").read_text())
    assert info["history"], "aae keeps a training curve"
    html = (out / "report.html").read_text()
    for text in ("model bundle", "training windows", "calibration FPR", "labelled ROC AUC", "Training loss"):
        assert text in html, text
    check_report(out / "report.html", tmp_path, "train", ["thresholds", "labelled", "densities", "windows",
                                                          "training-curve", "spans"], min_images=4)


# ------------------------------------------------------------------------------------- evaluate
def test_protocol_train_and_evaluate_reports_render(tmp_path, data_dir):
    need_chromium()
    model, out = tmp_path / "model", tmp_path / "eval"
    tiny = ["--param", "hidden_size=8", "--param", "latent_dim=3", "--param", "n_samples=2", "--epochs", "2",
            "--device", "cpu", "--threads", "1", "--limit", "40", "--data-dir", str(data_dir)]
    assert main(["train", "vrae", "--protocol", "ecg5000-semi", "--out", str(model), *tiny]) == 0
    html = (model / "report.html").read_text()
    assert "The test split is not used here" in html and "Training loss" in html
    check_report(model / "report.html", tmp_path, "train-protocol", ["thresholds", "densities", "windows",
                                                                     "training-curve"], min_images=3)
    assert main(["evaluate", str(model), "--out", str(out), "--data-dir", str(data_dir)]) == 0
    html = (out / "report.html").read_text()
    assert "latent_cluster (declared)" in html and "(post-hoc)" in html
    check_report(out / "report.html", tmp_path, "evaluate",
                 ["metrics", "densities", "confusion", "scores", "curves", "latent", "reconstructions"], min_images=7)


# ----------------------------------------------------------------------------------------- demo
def _demo_inputs():
    """A small demo run: two ECG-like series with V beats, the daemon's score and alert records for them."""
    from monitor.demo import S, T
    from streams.replay import ReplaySeries

    rng = np.random.default_rng(0)
    period, n, t0 = 1000.0 / 360, 360 * 30, 1_700_000_000_000.0
    streams_, scores, alerts = [], [], []
    for k in range(2):
        beats = [(int(i), "V" if j % 7 == 3 else "N") for j, i in enumerate(range(100, n - 100, 300))]
        sig = 0.05 * rng.standard_normal(n)
        for i, sym in beats:
            sig[i - 5:i + 5] += 1.0 if sym == "N" else -2.0
        st = ReplaySeries(f"mitdb-106-{k}", sig, period, None, beats)
        streams_.append(st)
        v_at = np.array([i for i, sym in beats if sym == "V"])
        open_ = None
        for w in range((n - T) // S + 1):
            a, e = w * S, w * S + T - 1
            hit = bool(((v_at >= a) & (v_at <= e)).any())
            score = float(abs(rng.normal(1.0, 0.3)) + (4.0 if hit else 0.0))
            end_ts = t0 + e * period
            rec = {"id": f"{st.series}@{int(end_ts * 1000)}", "series": st.series, "start_ts": t0 + a * period,
                   "end_ts": end_ts, "scores": {"max_abs_z": score}, "thresholds": {"max_abs_z": 3.0},
                   "anomalous": score > 3.0}
            scores.append(rec)
            if rec["anomalous"] and open_ is None:
                open_ = {"event": "start", "id": f"alert-{st.series}-{w}", "series": st.series,
                         "start_ts": end_ts, "ts": end_ts}
                alerts.append(open_)
            elif not rec["anomalous"] and open_ is not None:
                alerts.append({"event": "end", "id": open_["id"], "series": st.series, "ts": end_ts})
                open_ = None
    return streams_, scores, alerts, t0


def test_demo_report_renders(tmp_path):
    need_chromium()
    from monitor.demo import evaluate_demo
    from monitor.report import write_metrics
    from monitor.report_demo import write_demo_report

    streams_, scores, alerts, t0 = _demo_inputs()
    counts = {s.series: len(s) for s in streams_}

    class _Bundle:
        alert_components = ["max_abs_z"]

    summary = evaluate_demo(scores, alerts, streams_, t0, counts, type("D", (), {"bundle": _Bundle})())
    assert summary["windows_lost"] == 0 and summary["window_recall"] == 1.0 and summary["alerts"] > 0
    summary.update({"duration_s": 3.0, "readings_sent": sum(counts.values()), "records_sent": 300, "series": 2,
                    "speed": 10.0, "form": "chunk", "throughput_readings_per_s": 7200.0,
                    "throughput_windows_per_s": 200.0, "dlq": 0, "model": "ecg-robust-zscore",
                    "model_version": "demo-3", "detector": "robust-zscore", "threshold_mode": "calibrated",
                    "train_seconds": None, "window": {"length": 144, "stride": 36, "decimate": 6},
                    "latency_ms": {"p50": 20.0, "p95": 40.0, "p99": 60.0}})
    out = tmp_path / "demo"
    lat = np.random.default_rng(1).gamma(4.0, 5.0, size=len(scores))
    write_demo_report(summary, scores, alerts, streams_, t0, out, lat)
    write_metrics(out, summary)
    html = (out / "report.html").read_text()
    for text in ("window precision", "alert recall", "latency p99", "abnormal beats shaded"):
        assert text in html, text
    check_report(out / "report.html", tmp_path, "demo", ["summary", "series", "densities", "confusion", "latency"],
                 min_images=6)
