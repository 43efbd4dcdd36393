"""Why a window is anomalous (issue 19.5): explanations of bundles, and in the daemon's score records and
alert events on the real broker (``scoring.explain``). The per-detector contract (a spike in channel 3 of 5
ranks first) is in tests/test_contract.py."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.fixtures.daemon import T0_MS, daemon_config, make_bundle, read_topic

T, C = 16, 5
NAMES = ["temp", "pressure", "flow", "rpm", "vibration"]
SPIKE = 2  # "flow": channel 3 of 5
PERIOD_MS = 10


def _signal(k: int, i: np.ndarray) -> np.ndarray:
    """Readings i of series k: five sines of their own frequency and phase, (len(i), 5)."""
    f = np.array([1.0, 0.5, 2.0, 1.5, 0.75])
    return np.sin(2 * np.pi * i[:, None] * f[None, :] / 16.0 + k + np.arange(C)[None, :])


def _windows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, 4000, size=n)
    ks = rng.integers(0, 3, size=n)
    X = np.stack([_signal(int(k), np.arange(s, s + T)) for k, s in zip(ks, starts)]).astype(np.float32)
    return X + rng.normal(scale=0.05, size=X.shape).astype(np.float32)


@pytest.fixture(scope="module")
def lstm_bundle(tmp_path_factory):
    """A small lstm-ae bundle over 5 named channels (a few seconds to fit)."""
    from models import get_detector
    from monitor.modelstore import save_bundle

    X = _windows(256, 0)
    det = get_detector("lstm-ae")(hidden_size=16, latent_dim=4, patch_len=2, epochs=8, batch_size=32, patience=0,
                                  device="cpu", n_threads=1).fit(X)
    return save_bundle(det, tmp_path_factory.mktemp("explain") / "lstm", window_length=T, stride=4, channels=C,
                       calibration=_windows(128, 1), fpr=0.01, name="explain-test",
                       extra={"channel_names": NAMES})


def test_bundle_explanations_name_the_spiked_channel(lstm_bundle):
    from monitor.explain import WindowExplainer
    from monitor.modelstore import load_bundle

    b = load_bundle(lstm_bundle)
    X = _windows(4, 2)
    X[:, 6:9, SPIKE] += 5.0
    frags = WindowExplainer(b, top_k=3).fragments(X)
    for f in frags:
        assert [c["channel"] for c in f["channels"]][0] == "flow" and f["channels"][0]["index"] == SPIKE
        assert len(f["channels"]) == 3
        shares = [c["share"] for c in f["channels"]]
        assert shares == sorted(shares, reverse=True) and sum(shares) <= 1.0 + 1e-3
        assert f["span"][0] <= 6 and f["span"][1] >= 9 and f["span"][1] - f["span"][0] <= T // 2


def test_tabular_bundle_with_decimation_maps_channels_and_steps_back(tmp_path):
    """A tabular detector on flattened windows: its features are summed back per channel, and a
    decimating bundle's span is given in the window's own readings."""
    from models import get_detector
    from monitor.explain import WindowExplainer
    from monitor.modelstore import load_bundle, prepare_windows, save_bundle

    X = _windows(300, 3)
    Xp, _ = prepare_windows(X, "none", decimate=2)
    det = get_detector("robust-zscore")().fit(Xp.reshape(len(Xp), -1))
    save_bundle(det, tmp_path / "b", window_length=T, stride=T, channels=C, calibration=X, decimate=2)
    b = load_bundle(tmp_path / "b")
    w = _windows(1, 4)
    w[0, 9, 4] += 30.0  # reading 9 = model step 4 (every 2nd reading from the 2nd: 1, 3, 5, 7, 9, ...)
    e = WindowExplainer(b, top_k=2).explain(w)
    assert e.top[0, 0] == 4 and e.shares.shape == (1, C)
    assert e.span.tolist() == [[9, 10]]
    f = WindowExplainer(b, top_k=2).fragments(w)[0]
    assert f["channels"][0] == {"channel": 4, "index": 4, "share": round(float(e.shares[0, 4]), 4)}  # no names: indices


def test_explain_on_a_detector_that_cannot_is_a_config_error(tmp_path):
    from monitor.config import ScoringSection
    from monitor.errors import ConfigError
    from monitor.explain import make_explainer
    from monitor.modelstore import load_bundle

    b = load_bundle(make_bundle(tmp_path / "ecod", detector="ecod"))
    assert make_explainer(b, ScoringSection()) is None  # off by default
    with pytest.raises(ConfigError, match=r"scoring.explain: the model's detector 'ecod' cannot explain its scores"):
        make_explainer(b, ScoringSection(explain=True))
    assert make_explainer(b, ScoringSection(explain=True), reload=True) is None  # after a reload: logged, off
    from monitor.check_config import check

    _, _, problems = check(None, {"input.topics": ["x"], "model.dir": str(tmp_path / "ecod"), "scoring.explain": True},
                           env={})
    assert any(p.startswith("scoring.explain: the model's detector 'ecod' cannot explain") and "lstm-ae" in p
               for p in problems), problems


def test_explain_top_k_is_bounded():
    from monitor.config import load_config
    from monitor.errors import ConfigError

    with pytest.raises(ConfigError, match=r"scoring.explain_top_k: must be between 1 and 10, got 11"):
        load_config(None, env={}, overrides={"input.topics": ["x"], "scoring.explain_top_k": 11})


@pytest.mark.broker
@pytest.mark.timeout(240)
def test_daemon_alert_names_the_spiked_channel_first(broker, fresh_topic, lstm_bundle, inprocess_daemon):
    """On the real broker: a burst in channel "flow" of one series; its anomalous windows' score records
    and the alert that opens carry "explain" with "flow" first; normal windows' records carry none."""
    from streams.kafka import KafkaSettings, Sink, create_topics
    from streams.records import encode_chunk

    settings = KafkaSettings(bootstrap_servers=broker.bootstrap)
    create_topics(settings, {fresh_topic: 2})
    series, n, burst = ["m0", "m1"], 200, (120, 124)
    sink = Sink(settings, linger_ms=20)
    try:
        for a in range(0, n, 20):
            idx = np.arange(a, a + 20)
            for k, s in enumerate(series):
                v = _signal(k, idx)
                if s == "m0":
                    v[(idx >= burst[0]) & (idx < burst[1]), SPIKE] += 5.0
                sink.send(fresh_topic, encode_chunk(s, T0_MS + a * PERIOD_MS, PERIOD_MS, v), key=s)
        sink.flush()
    finally:
        sink.close()
    cfg = daemon_config(broker.bootstrap, fresh_topic, "g-" + fresh_topic, lstm_bundle,
                        scoring__threshold="calibrated", scoring__explain=True, scoring__explain_top_k=2)
    r = inprocess_daemon(cfg)
    want = len(series) * ((n - T) // 4 + 1)
    got = [json.loads(v) for _, v, _ in read_topic(broker.bootstrap, f"{fresh_topic}.scores", min_count=want,
                                                  timeout_s=90)]
    r.stop()
    assert len(got) == want
    flagged = [g for g in got if g["anomalous"]]
    assert flagged and all("explain" in g for g in flagged)
    assert not any("explain" in g for g in got if not g["anomalous"])
    in_burst = [g for g in flagged if g["series"] == "m0"
                and g["start_ts"] <= T0_MS + burst[0] * PERIOD_MS and g["end_ts"] >= T0_MS + (burst[1] - 1) * PERIOD_MS]
    assert in_burst, "the burst's windows were not flagged"
    for g in in_burst:
        ex = g["explain"]
        assert ex["channels"][0]["channel"] == "flow" and len(ex["channels"]) == 2
        at = burst[0] - (g["start_ts"] - T0_MS) // PERIOD_MS  # the burst's first step in this window
        assert ex["span"][0] <= at and ex["span"][1] >= at + burst[1] - burst[0], (ex, at)
    alerts = [json.loads(v) for _, v, _ in read_topic(broker.bootstrap, f"{fresh_topic}.alerts", timeout_s=10, idle_s=1)]
    starts = [a for a in alerts if a["event"] == "start" and a["series"] == "m0"]
    assert starts, alerts
    assert starts[0]["explain"]["channels"][0] == {"channel": "flow", "index": SPIKE,
                                                    "share": starts[0]["explain"]["channels"][0]["share"]}
    assert starts[0]["explain"]["channels"][0]["share"] > 0.5
    assert all("explain" not in a for a in alerts if a["event"] == "end")


def test_anomon_train_records_the_value_columns_as_channel_names(tmp_path):
    """A bundle from `anomon train --value-cols` names its channels, so explanations give the column names."""
    from monitor.cli import main
    from monitor.explain import WindowExplainer
    from monitor.modelstore import load_bundle

    v = _signal(0, np.arange(400))[:, :3]
    lines = ["ts,flow,temp,rpm"] + [f"{T0_MS + 10 * i},{a!r},{b!r},{c!r}" for i, (a, b, c) in enumerate(v.tolist())]
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "model"
    assert main(["train", "robust-zscore", "--data", str(tmp_path / "r.csv"), "--time-col", "ts", "--value-cols",
                 "temp,rpm,flow", "--window", str(T), "--stride", "4", "--out", str(out)]) == 0
    b = load_bundle(out)
    assert b.meta["channel_names"] == ["temp", "rpm", "flow"]
    w = v[None, 100:100 + T, [1, 2, 0]].astype(np.float32).copy()
    w[0, 7, 1] += 10.0  # rpm
    assert WindowExplainer(b, top_k=1).fragments(w)[0]["channels"][0]["channel"] == "rpm"
