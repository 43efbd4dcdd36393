"""``anomon demo``: the whole product on one machine, in about a minute.

1. A model bundle: the VRAE trained on the first 10 minutes of MIT-BIH record 106 (normal
   windows only), its thresholds calibrated at 1 % FPR on the normal windows of minute 10 (no
   window shared with training), cached under ``~/.cache/anomon/models`` (or ``--model-dir``);
   trained on first use.
2. The embedded Kafka broker (Tansu).
3. ``anomon run`` in-process, with its metrics.
4. A replay of the rest of record 106 (normal N and ventricular V beats) as continuous 360 Hz ECG,
   ``--series`` phase-shifted copies, ``--speed`` times real time.
5. A live terminal view: per-series status, throughput, lag, latency.
6. At the end: precision / recall / F1 of the alerts against the beat labels (and per window),
   windows lost and duplicated, throughput, latency percentiles; ``report.html`` + ``metrics.json``,
   and ``--json FILE``.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

log = logging.getLogger("anomon.demo")

RECORD = "106"
FS = 360.0
T = 144  # 0.4 s windows
S = 36  # one window every 0.1 s
DECIMATE = 6  # the model sees 24 steps (60 Hz)
TRAIN_MINUTES = 10.0
CALIBRATION_MINUTES = 1.0  # minute 10 of record 106 (no abnormal beat): thresholds, never trained on
REPLAY_FROM_MINUTE = 11.0
#: demo-2: calibrated on minute 10 (demo-1 calibrated on minutes 8-10, inside the training span)
#: demo-3: alerts on the VRAE's declared component (combined; demo-2: reconstruction_probability)
MODEL_VERSION = "demo-3"
VRAE_PARAMS = dict(hidden_size=24, latent_dim=8, context_dim=4, epochs=10, batch_size=64, patience=4,
                   n_samples=4, n_wasserstein=128, n_clusters=8, seed=0)


def default_model_dir(detector: str = "vrae", record: str = RECORD) -> Path:
    root = Path(os.environ.get("ANOMON_MODEL_CACHE", "~/.cache/anomon/models")).expanduser()
    return root / f"mitdb{record}-{detector}-{MODEL_VERSION}"


def _training_windows(record: str, data_dir: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Normal windows of minutes 0 to TRAIN_MINUTES (train) and of the minute after (calibration).

    The spans are disjoint: every training window ends before sample ``n_train`` and every
    calibration window starts at or after it, so no calibration window shares a reading with a
    training window; the replay starts at REPLAY_FROM_MINUTE, after both.

    >>> n_train = int(TRAIN_MINUTES * 60 * FS)
    >>> cal_span(n_train)[0] >= n_train and cal_span(n_train)[1] <= int(REPLAY_FROM_MINUTE * 60 * FS)
    True
    """
    from numpy.lib.stride_tricks import sliding_window_view

    from streams.datasets import load_mitdb_record

    rec = load_mitdb_record(record, data_dir)
    sig = rec.signal[:, 0].astype(np.float32)
    lab = rec.sample_labels(half_width=int(0.1 * FS))
    n_train = int(TRAIN_MINUTES * 60 * FS)
    w = sliding_window_view(sig[:n_train], T)[::54]
    bad = sliding_window_view(lab[:n_train], T)[::54].max(axis=1) > 0
    X = w[~bad][:, :, None]
    a, b = cal_span(n_train)
    wc = sliding_window_view(sig[a:b], T)[::9]
    badc = sliding_window_view(lab[a:b], T)[::9].max(axis=1) > 0
    return np.ascontiguousarray(X), np.ascontiguousarray(wc[~badc][:, :, None])


def cal_span(n_train: int) -> tuple[int, int]:
    """Sample range [a, b) of the calibration windows: the minute after training, before the replay."""
    return n_train, min(n_train + int(CALIBRATION_MINUTES * 60 * FS), int(REPLAY_FROM_MINUTE * 60 * FS))


def ensure_demo_model(model_dir: str | os.PathLike | None = None, detector: str = "vrae", record: str = RECORD,
                      retrain: bool = False, data_dir: Any = None, out: TextIO = sys.stdout) -> tuple[Path, float | None]:
    """The demo's model bundle, trained and cached on first use. Returns (path, training seconds or None)."""
    from monitor.modelstore import ModelBundleError, load_bundle, prepare_windows, save_bundle

    path = Path(model_dir).expanduser() if model_dir else default_model_dir(detector, record)
    if not retrain and (path / "anomon.json").is_file():
        try:
            load_bundle(path)
            print(f"model: {path} (cached)", file=out, flush=True)
            return path, None
        except ModelBundleError as exc:
            print(f"model: cached bundle unusable ({exc}); training again", file=out, flush=True)
    from models import get_detector

    X, Xcal = _training_windows(record, data_dir)
    Xm, _ = prepare_windows(X, "center", DECIMATE)
    if detector == "vrae":
        det = get_detector("vrae")(**VRAE_PARAMS, n_threads=min(2, os.cpu_count() or 1), device="cpu")
    else:
        det = get_detector(detector)()
    comp = det.default_component_name()  # the detector's declared component, as the daemon and reports use
    print(f"model: training {detector} on {len(X)} normal windows of MIT-BIH {record} (first "
          f"{TRAIN_MINUTES:g} min; cached in {path}) ...", file=out, flush=True)
    t = time.monotonic()
    det.fit(Xm.reshape(len(Xm), -1) if det.input_kind == "tabular" else Xm)
    dt = time.monotonic() - t
    save_bundle(det, path, window_length=T, stride=S, channels=1, calibration=Xcal, fpr=0.01,
                name=f"ecg-{detector}", version=MODEL_VERSION, normalize="center", decimate=DECIMATE,
                alert_components=[comp], extra={"trained_on": f"mitdb {record}, minutes 0-{TRAIN_MINUTES:g}",
                                                "calibrated_on": f"mitdb {record}, minutes {TRAIN_MINUTES:g}-"
                                                f"{TRAIN_MINUTES + CALIBRATION_MINUTES:g} ({len(Xcal)} windows)",
                                                "train_seconds": round(dt, 1)})
    print(f"model: trained in {dt:.0f}s", file=out, flush=True)
    return path, dt


class _Collector(threading.Thread):
    """Reads the scores and alerts topics while the demo runs."""

    def __init__(self, bootstrap: str, topics: list[str]):
        super().__init__(name="demo-collector", daemon=True)
        self.bootstrap, self.topics = bootstrap, topics
        self.records: dict[str, list[dict]] = {t: [] for t in topics}
        self.stop_flag = threading.Event()
        self.last_new = time.monotonic()

    def run(self) -> None:
        from streams.kafka import KafkaConsumer, KafkaSettings, topic_partitions

        s = KafkaSettings(bootstrap_servers=self.bootstrap)
        per_topic: dict[str, list] = {}
        while len(per_topic) < len(self.topics) and not self.stop_flag.is_set():
            for t in self.topics:  # every topic must show its partitions, not just one of them
                if t not in per_topic and (parts := topic_partitions(s, t)):
                    per_topic[t] = parts
            if len(per_topic) < len(self.topics):
                time.sleep(0.3)
        tps = [tp for t in self.topics for tp in per_topic.get(t, [])]
        c = KafkaConsumer(**s.to_kafka_python(), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
        c.assign(tps)
        c.seek_to_beginning(*tps)
        try:
            while not self.stop_flag.is_set():
                for tp, recs in c.poll(timeout_ms=200).items():
                    if recs:
                        self.last_new = time.monotonic()
                    self.records[tp.topic].extend(json.loads(r.value) for r in recs)
        finally:
            c.close()


def _live_line(elapsed: float, sent: int, scored: int, lag: int, p99: float | None, dlq: int, rates: tuple) -> str:
    p = f"{p99 * 1000:.0f} ms" if p99 is not None else "-"
    return (f"[{elapsed:5.0f}s] sent {sent:>8} readings ({rates[0]:>6.0f}/s) | scored {scored:>6} windows "
            f"({rates[1]:>5.0f}/s) | lag {lag:>5} records | p99 latency {p} | DLQ {dlq}")


def _alert_step(state: list | None, anomalous: bool, open_after: int, close_after: int) -> list | None:
    """The alert state of a series after one more window, by the daemon's hysteresis rules
    (``Daemon._hysteresis``): ``[anomalous in a row, normal in a row, "open" or None]``, None when the daemon
    keeps no state for the series. The live view follows it over the score records it shows, so the flag
    and the alert state of a line belong to the same window.

    >>> st = None
    >>> for flag in (True, False, False):
    ...     st = _alert_step(st, flag, 1, 3); print(st)
    [1, 0, 'open']
    [0, 1, 'open']
    [0, 2, 'open']
    >>> print(_alert_step(st, False, 1, 3))
    None
    """
    if state is None:
        if not anomalous:
            return None
        state = [0, 0, None]
    else:
        state = list(state)
    if anomalous:
        state[0], state[1] = state[0] + 1, 0
        if state[2] is None and state[0] >= open_after:
            state[2] = "open"
        return state
    state[0], state[1] = 0, state[1] + 1
    if state[2] is None or state[1] >= close_after:
        return None
    return state


def _series_line(series: str, component: str, score: float, threshold: float, anomalous: bool,
                 alert: list | None, open_after: int, close_after: int) -> str:
    """One series of the live view: its last window's score and flag, and the alert state beside it.

    ``anomalous`` is the window's own flag (its score against the threshold); ``alert`` is the daemon's
    hysteresis state of the series (``Daemon._alerts[series]``: anomalous windows in a row, normal windows
    in a row, open alert id or None, ...; None when the series has none). An alert opens after
    ``open_after`` anomalous windows in a row and closes after ``close_after`` normal ones, so a window can
    be below the threshold while its alert is still open, and above it before the alert opens.

    >>> _series_line("ecg-1", "nll", 3.2, 8.0, False, [0, 1, "ecg-1@5", 5, 12.0, None], 1, 3)
    '    ecg-1            nll      3.20  threshold     8.00  below  | alert OPEN   (closes after 2 more below)'
    >>> _series_line("ecg-1", "nll", 9.5, 8.0, True, [1, 0, None, 5, 9.5, None], 3, 3)
    '    ecg-1            nll      9.50  threshold     8.00  ABOVE  | alert closed (opens after 2 more above)'
    >>> _series_line("ecg-1", "nll", 1.0, 8.0, False, None, 1, 5)
    '    ecg-1            nll      1.00  threshold     8.00  below  | alert closed (opens after 1 above)'
    """
    flag = "ABOVE" if anomalous else "below"
    if alert is not None and alert[2] is not None:  # open: normal windows in a row count towards its end
        left = max(0, close_after - int(alert[1]))
        state = f"alert OPEN   (closes after {left}{' more' if alert[1] else ''} below)"
    else:  # closed: anomalous windows in a row count towards opening one
        run = int(alert[0]) if alert is not None else 0
        left = max(0, open_after - run)
        state = f"alert closed (opens after {left}{' more' if run else ''} above)"
    return f"    {series:16s} {component} {score:9.2f}  threshold {threshold:8.2f}  {flag}  | {state}"


def run_demo(duration: float = 60.0, *, model_dir: str | None = None, series: int = 2, speed: float = 10.0,
             form: str = "chunk", json_path: str | None = None, out_dir: str = "runs/demo", detector: str = "vrae",
             retrain: bool = False, record: str = RECORD, threshold: str = "calibrated", data_dir: Any = None,
             out: TextIO = sys.stdout, refresh_s: float = 2.0) -> dict[str, Any]:
    """Run the demo; returns the summary (also written to ``out_dir`` and ``json_path``)."""
    from monitor.config import load_config
    from monitor.runner import start_daemon
    from streams.broker import EmbeddedBroker
    from streams.kafka import KafkaSettings, Sink, create_topics
    from streams.replay import load_replay_series, replay

    bundle_path, train_s = ensure_demo_model(model_dir, detector, record, retrain, data_dir, out)
    start_s = REPLAY_FROM_MINUTE * 60
    replay_s = duration * speed + 5  # ECG seconds per series (a little more than the run can send)
    base = load_replay_series(f"mitdb:{record}", None, data_dir, start_s=start_s, duration_s=replay_s)
    streams_ = load_replay_series.__globals__["_copies"](base, series)
    t0_ms = float(int(time.time() * 1000))
    rate = FS * speed * series
    broker = EmbeddedBroker().start()
    print(f"broker: embedded Tansu on {broker.bootstrap}", file=out, flush=True)
    topic = "anomon-demo-readings"
    cfg = load_config(None, env={}, overrides={
        "kafka.bootstrap_servers": broker.bootstrap, "kafka.partitions": 4, "input.topics": [topic],
        "input.group_id": "anomon-demo", "model.dir": str(bundle_path), "scoring.threshold": threshold,
        "scoring.open_after": 1, "scoring.close_after": 5, "output.commit_interval_s": 1.0, "http.port": 0,
        "scoring.max_wait_ms": 50, "scoring.max_batch": 512})
    settings = KafkaSettings(bootstrap_servers=broker.bootstrap)
    summary: dict[str, Any] = {}
    running = None
    collector = None
    try:
        create_topics(settings, {topic: 4})
        running = start_daemon(cfg)
        d = running.daemon
        print(f"daemon: scoring with {d.bundle}; metrics on http://127.0.0.1:{running.http_port}/metrics",
              file=out, flush=True)
        collector = _Collector(broker.bootstrap, [cfg.output.scores_topic, cfg.output.alerts_topic])
        collector.start()
        counts = {s.series: 0 for s in streams_}
        stop_replay = threading.Event()
        state = {"sent": 0}
        sink = Sink(settings, linger_ms=10)

        def send(tp, value, key, headers):
            sink.send(tp, value, key=key, headers=headers)
            counts[key.decode()] += value.count(b"],[") + 1 if form == "chunk" else 1
            state["sent"] += 1

        def do_replay():
            try:
                replay(streams_, send, topic, rate=rate, form=form, chunk=int(S), t0_ms=t0_ms,
                       duration_s=duration, stop=stop_replay.is_set)
                sink.flush()
            except Exception:  # noqa: BLE001
                log.exception("replay failed")

        # wait until the daemon owns its partitions, so the live view starts at once
        deadline = time.monotonic() + 60
        while not d._owned and time.monotonic() < deadline:
            time.sleep(0.1)
        rt = threading.Thread(target=do_replay, name="demo-replay", daemon=True)
        t_start = time.monotonic()
        rt.start()
        last = (t_start, 0, 0)
        tty = out.isatty() if hasattr(out, "isatty") else False
        lastby: dict[str, dict] = {}
        alert_by: dict[str, list | None] = {}
        n_seen = 0
        while rt.is_alive():
            rt.join(refresh_s)
            now = time.monotonic()
            sent_r = sum(counts.values())
            scored = d.stats["windows"]
            rates = ((sent_r - last[1]) / max(now - last[0], 1e-9), (scored - last[2]) / max(now - last[0], 1e-9))
            last = (now, sent_r, scored)
            lat = list(d.latencies)[-5000:]
            p99 = float(np.percentile(lat, 99)) if lat else None
            lines = [_live_line(now - t_start, sent_r, scored, sum(d.lag().values()), p99, d.stats["dlq"], rates)]
            scores = collector.records[cfg.output.scores_topic]
            new = scores[n_seen:]
            n_seen += len(new)
            for r in new:  # each series' last window, and its alert state after it (the daemon's rules)
                lastby[r["series"]] = r
                alert_by[r["series"]] = _alert_step(alert_by.get(r["series"]), bool(r.get("anomalous")),
                                                    cfg.scoring.open_after, cfg.scoring.close_after)
            comp = d.bundle.alert_components[0]
            for s in streams_:
                r = lastby.get(s.series)
                if r:
                    lines.append(_series_line(s.series, comp, r["scores"][comp], r["thresholds"][comp],
                                              bool(r.get("anomalous")), alert_by.get(s.series),
                                              cfg.scoring.open_after, cfg.scoring.close_after))
            if tty:
                out.write("\x1b[2K" + "\n".join(lines) + "\n")
            else:
                out.write("\n".join(lines) + "\n")
            out.flush()
        t_replay = time.monotonic() - t_start
        sink.close()
        # let the daemon catch up, then stop it (it drains and commits)
        expected = {s: max(0, (n - T) // S + 1) for s, n in counts.items()}
        n_exp = sum(expected.values())
        deadline = time.monotonic() + 60
        while d.stats["windows"] < n_exp and time.monotonic() < deadline:
            time.sleep(0.2)
        t_scored = time.monotonic() - t_start
        stats = running.stop()
        running = None
        deadline = time.monotonic() + 15
        while len(collector.records[cfg.output.scores_topic]) < n_exp and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        collector.stop_flag.set()
        collector.join(5)
        summary = evaluate_demo(collector.records[cfg.output.scores_topic], collector.records[cfg.output.alerts_topic],
                                streams_, t0_ms, counts, d)
        summary.update({
            "duration_s": round(t_replay, 2), "readings_sent": int(sum(counts.values())),
            "records_sent": state["sent"], "series": series, "speed": speed, "form": form,
            "throughput_readings_per_s": round(sum(counts.values()) / max(t_scored, 1e-9), 1),
            "throughput_windows_per_s": round(summary["windows_scored"] / max(t_scored, 1e-9), 1),
            "dlq": stats.get("dlq", 0), "model": d.bundle.name, "model_version": d.bundle.version,
            "detector": d.bundle.detector.name, "threshold_mode": threshold, "train_seconds": train_s,
            "window": {"length": T, "stride": S, "decimate": DECIMATE},
        })
        lat = np.asarray(d.latencies, dtype=float)
        if lat.size:
            summary["latency_ms"] = {f"p{q}": round(float(np.percentile(lat, q)) * 1000, 1) for q in (50, 95, 99)}
        from monitor.report import write_metrics
        from monitor.report_demo import write_demo_report

        write_demo_report(summary, collector.records[cfg.output.scores_topic],
                          collector.records[cfg.output.alerts_topic], streams_, t0_ms, out_dir, lat * 1000)
        write_metrics(out_dir, summary)
        summary["report"] = str(Path(out_dir) / "report.html")
        if json_path:
            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
            Path(json_path).write_text(json.dumps(summary, indent=2))
        _print_summary(summary, out)
        return summary
    finally:
        if collector is not None:
            collector.stop_flag.set()
        logging.getLogger("kafka").setLevel(logging.CRITICAL)  # clients closing while the broker stops
        if running is not None:
            try:
                running.stop(timeout=30)
            except Exception:  # noqa: BLE001
                pass
        broker.stop()


#: One sentence per figure, printed and reported beside it.
DEFINITIONS = {
    "window": "window precision / recall / F1: every scored window is one case, anomalous when the R peak of a "
              "non-N beat lies inside it, flagged when its score is above the threshold",
    "alert": "alert precision: the share of alerts whose span (first flagged window's start to the alert's end) "
             "holds an abnormal beat; alert recall: the share of abnormal beats inside some alert's span",
}


def _labels_for(scores: list[dict], streams_: list, t0_ms: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per score record: 1 when a non-N beat's R peak lies in the window; abnormal beat times per series."""
    beat_t: dict[str, np.ndarray] = {}
    for s in streams_:
        bt = [(t0_ms + s.offset_ms + i * s.period_ms, sym) for i, sym in s.beats]
        beat_t[s.series] = np.array([t for t, sym in bt if sym != "N"])
    y = np.zeros(len(scores), dtype=int)
    for i, r in enumerate(scores):
        b = beat_t.get(r["series"])
        if b is not None and b.size:
            j = np.searchsorted(b, r["start_ts"] - 0.5)
            y[i] = int(j < b.size and b[j] <= r["end_ts"] + 0.5)
    return y, beat_t


def alert_intervals(alerts: list[dict], scores: list[dict], streams_: list) -> list[tuple[str, float, float]]:
    """(series, start ms, end ms) of every alert: from the start of its first flagged window to its
    end event (an alert still open at the end runs to the series' last scored window)."""
    period = {s.series: s.period_ms for s in streams_}
    last_ts = {s: max((r["end_ts"] for r in scores if r["series"] == s), default=0) for s in period}
    intervals: list[tuple[str, float, float]] = []
    open_: dict[str, dict] = {}
    for a in sorted(alerts, key=lambda a: a["ts"]):
        if a["event"] == "start":
            open_[a["id"]] = a
        elif a["id"] in open_:
            st = open_.pop(a["id"])
            intervals.append((st["series"], st["start_ts"] - (T - 1) * period[st["series"]], a["ts"]))
    for st in open_.values():
        intervals.append((st["series"], st["start_ts"] - (T - 1) * period[st["series"]], last_ts[st["series"]]))
    return intervals


def evaluate_demo(scores: list[dict], alerts: list[dict], streams_: list, t0_ms: float, counts: dict,
                  d: Any) -> dict[str, Any]:
    from monitor.evaluation import pr_auc, roc_auc

    ids = [r["id"] for r in scores]
    uniq: dict[str, dict] = {}
    for r in scores:
        uniq.setdefault(r["id"], r)
    expected = set()
    for s in streams_:
        n = counts.get(s.series, 0)
        for w in range(max(0, (n - T) // S + 1)):
            e = w * S + T - 1
            expected.add(f"{s.series}@{int(round((t0_ms + e * s.period_ms) * 1000))}")
    rows = list(uniq.values())
    y, beat_t = _labels_for(rows, streams_, t0_ms)
    comp = d.bundle.alert_components[0]
    sc = np.array([r["scores"][comp] for r in rows]) if rows else np.zeros(0)
    flag = np.array([r["anomalous"] for r in rows], dtype=bool) if rows else np.zeros(0, dtype=bool)
    tp = int((flag & (y == 1)).sum())
    fp = int((flag & (y == 0)).sum())
    fn = int((~flag & (y == 1)).sum())
    wp = tp / (tp + fp) if tp + fp else 0.0
    wr = tp / (tp + fn) if tp + fn else 0.0
    out: dict[str, Any] = {
        "windows_expected": len(expected), "windows_scored": len(uniq), "windows_lost": len(expected - set(uniq)),
        "duplicates": len(ids) - len(uniq), "windows_labelled_anomalous": int(y.sum()),
        "window_precision": round(wp, 4), "window_recall": round(wr, 4),
        "window_f1": round(2 * wp * wr / (wp + wr), 4) if wp + wr else 0.0,
        "window_roc_auc": round(roc_auc(y, sc), 4) if 0 < y.sum() < len(y) else None,
        "window_pr_auc": round(pr_auc(y, sc), 4) if 0 < y.sum() < len(y) else None,
        "score_component": comp,
        "definitions": dict(DEFINITIONS),
    }
    intervals = alert_intervals(alerts, rows, streams_)
    last_ts = {s.series: max((r["end_ts"] for r in rows if r["series"] == s.series), default=0) for s in streams_}
    hit_alerts = 0
    detected = 0
    total = 0
    for s, bt in beat_t.items():
        bt = bt[bt <= last_ts.get(s, 0)]
        total += bt.size
        mine = [(a, b) for ss, a, b in intervals if ss == s]
        covered = np.zeros(bt.size, dtype=bool)
        for a, b in mine:
            m = (bt >= a) & (bt <= b)
            covered |= m
            hit_alerts += bool(m.any())
        detected += int(covered.sum())
    ap = hit_alerts / len(intervals) if intervals else 0.0
    ar = detected / total if total else 0.0
    out.update({
        "alerts": len(intervals), "alerts_with_abnormal_beat": hit_alerts, "abnormal_beats": total,
        "abnormal_beats_in_alerts": detected, "precision": round(ap, 4), "recall": round(ar, 4),
        "f1": round(2 * ap * ar / (ap + ar), 4) if ap + ar else 0.0,
    })
    return out


def _print_summary(s: dict, out: TextIO) -> None:
    lat = s.get("latency_ms", {})
    print("\n== anomon demo summary ==", file=out)
    print(f"windows: expected {s['windows_expected']}, scored {s['windows_scored']}, lost {s['windows_lost']}, "
          f"duplicates {s['duplicates']}, DLQ {s['dlq']}", file=out)
    print(f"throughput: {s['throughput_readings_per_s']:.0f} readings/s, {s['throughput_windows_per_s']:.0f} windows/s; "
          f"latency p50 {lat.get('p50', '-')} ms, p99 {lat.get('p99', '-')} ms", file=out)
    print(f"windows: precision {s['window_precision']:.3f}, recall {s['window_recall']:.3f}, F1 {s['window_f1']:.3f}, "
          f"ROC AUC {s['window_roc_auc']}, PR AUC {s['window_pr_auc']} ({s['score_component']})", file=out)
    print(f"  ({DEFINITIONS['window']})", file=out)
    print(f"alerts: {s['alerts']}; precision {s['precision']:.3f}, recall {s['recall']:.3f}, F1 {s['f1']:.3f} "
          f"({s['abnormal_beats_in_alerts']}/{s['abnormal_beats']} abnormal beats inside alerts)", file=out)
    print(f"  ({DEFINITIONS['alert']})", file=out)
    print(f"report: {s['report']}", file=out, flush=True)
