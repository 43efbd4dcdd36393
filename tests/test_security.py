"""Security (issue 7): models load only from weights + JSON (a pickle is rejected, never executed),
secrets never reach logs, errors or ``--check-config``, HTTP endpoints bind to loopback unless
told otherwise (with a warning), input sizes are bounded (series per partition included), and the
daemon's Kafka TLS/SASL settings reach kafka-python unchanged.

Real commands (``python -m monitor.cli ...`` subprocesses) wherever output is grepped.
"""
from __future__ import annotations

import http.server
import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from monitor.reliability import record
from tests.fixtures.daemon import REPO, daemon_config, expected_window_ids, produce_readings, read_topic, \
    score_ids, write_config

T, S = 16, 4
SASL_PW = "Sasl-pw-7Hq2-do-not-print"
SSL_PW = "Ssl-key-pw-Zx81-do-not-print"
GRAFANA_TOKEN = "glsa_Tok3n-Qw9-do-not-print"
SECRETS = (SASL_PW, SSL_PW, GRAFANA_TOKEN)


def _cli(args: list[str], env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    e = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "monitor.cli", *args], cwd=REPO, env=e, capture_output=True,
                          text=True, timeout=timeout)


def _no_secret(text: str) -> None:
    for s in SECRETS:
        assert s not in text, f"secret {s[:6]}... leaked"


# --------------------------------------------------------------------------- pickle


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["weights-are-a-pickle", "config-points-at-a-pkl", "torch-save-zip"])
def test_pickle_bearing_model_rejected_by_anomon_run_without_executing(how, broker, daemon_bundle, tmp_path):
    marker = tmp_path / "pwned"
    model = tmp_path / "model"
    shutil.copytree(daemon_bundle, model)
    if how == "weights-are-a-pickle":
        (model / "weights.safetensors").write_bytes(pickle.dumps(_Evil(marker)))
    elif how == "config-points-at-a-pkl":
        (model / "model.pkl").write_bytes(pickle.dumps(_Evil(marker)))
        c = json.loads((model / "config.json").read_text())
        c["weights"] = "model.pkl"
        (model / "config.json").write_text(json.dumps(c))
    else:  # torch.save writes a zip holding a pickle: loading it with torch.load(weights_only=False) would run it
        import torch

        torch.save({"w": torch.zeros(2), "evil": _Evil(marker)}, model / "weights.safetensors")
    cfg = daemon_config(broker.bootstrap, "sec-pickle", "g-sec-pickle", model)
    p = _cli(["run", "--config", str(write_config(tmp_path / "c.toml", cfg))])
    assert p.returncode == 2, p.stderr[-2000:]
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("anomon: error: ") and "safetensors" in last, last
    assert "Traceback" not in p.stderr
    assert not marker.exists()
    record(f"security-pickle-{how}", {"exit_code": p.returncode, "payload_executed": marker.exists(),
                                      "error": last.replace(str(tmp_path), "…")[:140]},
           title=f"pickle-bearing model through `anomon run` ({how})",
           reproduce=f"pytest 'tests/test_security.py::test_pickle_bearing_model_rejected_by_anomon_run_without_executing[{how}]'")


# --------------------------------------------------------------------------- secrets


@pytest.fixture
def secret_files(tmp_path):
    pw = tmp_path / "kafka.pw"
    pw.write_text(SASL_PW + "\n")
    tok = tmp_path / "grafana.token"
    tok.write_text(GRAFANA_TOKEN + "\n")
    tok.chmod(0o600)
    pems = {}
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
        pems[name] = str(tmp_path / name)
    return {"pw": pw, "token": tok, **pems}


def _secure_toml(path: Path, secret_files: dict, bootstrap: str, model: Path, via: str) -> Path:
    lines = ["[kafka]", f'bootstrap_servers = "{bootstrap}"', 'security_protocol = "SASL_PLAINTEXT"',
             'sasl_mechanism = "PLAIN"', 'sasl_plain_username = "svc-anomon"']
    lines.append(f'sasl_plain_password_file = "{secret_files["pw"]}"' if via == "file"
                 else 'sasl_plain_password_env = "ANOMON_TEST_SASL_PW"')
    lines += ["[model]", f'dir = "{model}"', "[http]", "enabled = false"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_secrets_never_in_check_config_output_or_config_errors(secret_files, daemon_bundle, tmp_path):
    env = {"ANOMON_TEST_SASL_PW": SASL_PW, "ANOMON_TEST_SSL_PW": SSL_PW}
    outputs = []
    for via in ("file", "env"):
        cfg = _secure_toml(tmp_path / f"{via}.toml", secret_files, "k1:9092", daemon_bundle, via)
        p = _cli(["run", "--config", str(cfg), "--check-config"], env=env)
        assert p.returncode == 0, p.stderr
        assert "sasl_plain_password_" in p.stdout and "svc-anomon" in p.stdout
        outputs.append(p.stdout + p.stderr)
    # SSL key password by env override, on top of the file
    p = _cli(["run", "--config", str(tmp_path / "env.toml"), "--check-config"],
             env={**env, "ANOMON_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "ANOMON_KAFKA__SSL_CAFILE": secret_files["ca.pem"],
                  "ANOMON_KAFKA__SSL_CERTFILE": secret_files["client.pem"],
                  "ANOMON_KAFKA__SSL_KEYFILE": secret_files["client.key"],
                  "ANOMON_KAFKA__SSL_PASSWORD_ENV": "ANOMON_TEST_SSL_PW"})
    assert p.returncode == 0, p.stderr
    assert '"SASL_SSL"' in p.stdout and "ANOMON_TEST_SSL_PW" in p.stdout
    outputs.append(p.stdout + p.stderr)
    # secrets written where they do not belong: refused, and the refusal does not echo them
    bad = tmp_path / "inline.toml"
    bad.write_text(f'[kafka]\nbootstrap_servers = "k1:9092"\nsasl_plain_password = "{SASL_PW}"\n')
    p = _cli(["run", "--config", str(bad), "--check-config"])
    assert p.returncode == 2 and "sasl_plain_password_env" in p.stderr, p.stderr
    outputs.append(p.stdout + p.stderr)
    p = _cli(["run", "--check-config"], env={"ANOMON_KAFKA__SASL_PLAIN_PASSWORD": SASL_PW})
    assert p.returncode == 2, p.stderr
    outputs.append(p.stdout + p.stderr)
    # a missing secret file: the error names the file, not a secret
    p = _cli(["run", "--config", str(tmp_path / "file.toml"), "--check-config"],
             env={"ANOMON_KAFKA__SASL_PLAIN_PASSWORD_FILE": str(tmp_path / "nope")})
    assert p.returncode == 2 and "nope" in p.stderr, p.stderr
    outputs.append(p.stdout + p.stderr)
    for text in outputs:
        _no_secret(text)
    record("security-secrets-check-config", {"commands_grepped": len(outputs), "secret_found": 0},
           title="secrets (SASL/SSL passwords from env or file) in `anomon run --check-config` and config errors",
           reproduce="pytest tests/test_security.py::test_secrets_never_in_check_config_output_or_config_errors")


def test_secrets_never_in_daemon_logs_while_sasl_fails(broker, secret_files, daemon_bundle, tmp_path):
    """A real ``anomon run --log-level DEBUG`` with SASL against Tansu (which refuses SASL PLAIN):
    its log, however long it runs, holds neither password."""
    cfg = _secure_toml(tmp_path / "run.toml", secret_files, broker.bootstrap, daemon_bundle, "env")
    log_path = tmp_path / "run.log"
    env = dict(os.environ, OMP_NUM_THREADS="1", ANOMON_TEST_SASL_PW=SASL_PW)
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "--log-level", "DEBUG", "run", "--config",
                                 str(cfg)], cwd=REPO, env=env, stdout=logf, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                if "Sasl" in log_path.read_text(errors="replace"):  # the handshake was tried and refused
                    break
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(30)
    text = log_path.read_text(errors="replace")
    assert "Sasl" in text, text[-2000:]
    _no_secret(text)
    record("security-secrets-daemon-log", {"log_bytes_grepped": len(text), "secret_found": 0},
           title="SASL password in the DEBUG log of a real `anomon run` whose SASL handshake fails",
           reproduce="pytest tests/test_security.py::test_secrets_never_in_daemon_logs_while_sasl_fails")


class _FakeGrafana(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - every call is unauthorised
        body = json.dumps({"message": "invalid API key"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_GET

    def log_message(self, *a):
        pass


def test_grafana_token_never_in_output(secret_files, tmp_path):
    from streams.broker import free_port

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeGrafana)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    outputs = []
    try:
        for url in (f"http://127.0.0.1:{srv.server_address[1]}", f"http://127.0.0.1:{free_port()}"):
            p = _cli(["--log-level", "DEBUG", "deploy", "grafana", "--url", url, "--token-file",
                      str(secret_files["token"]), "--timeout", "3"])
            assert p.returncode != 0
            outputs.append(p.stdout + p.stderr)
            p = _cli(["--log-level", "DEBUG", "deploy", "grafana", "--url", url, "--timeout", "3"],
                     env={"ANOMON_GRAFANA_TOKEN": GRAFANA_TOKEN})
            assert p.returncode != 0
            outputs.append(p.stdout + p.stderr)
    finally:
        srv.shutdown()
        srv.server_close()
    assert any("401" in o for o in outputs) and any("cannot reach" in o for o in outputs), outputs
    for text in outputs:
        _no_secret(text)
    record("security-secrets-grafana", {"commands_grepped": len(outputs), "secret_found": 0},
           title="Grafana token (file or env) in `anomon deploy grafana` output: 401 and unreachable server, DEBUG logs",
           reproduce="pytest tests/test_security.py::test_grafana_token_never_in_output")


# --------------------------------------------------------------------------- HTTP binding


def test_http_endpoints_bind_loopback_by_default_elsewhere_only_explicitly_with_a_warning(broker, daemon_bundle,
                                                                                         caplog):
    from monitor.config import Config
    from monitor.runner import build

    assert Config().http.host == "127.0.0.1"
    seen = {}
    for host in (None, "0.0.0.0"):
        extra = {"http__host": host} if host else {}
        cfg = daemon_config(broker.bootstrap, "sec-http", "g-sec-http", daemon_bundle, http__enabled=True,
                            http__port=0, **extra)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            r = build(cfg)
        try:
            seen[host or "default"] = r.http._server.server_address[0]
            warned = any("not loopback" in m for m in caplog.messages)
        finally:
            r.http.stop()
        assert warned == (host is not None), caplog.messages
    assert seen == {"default": "127.0.0.1", "0.0.0.0": "0.0.0.0"}
    record("security-http-bind", {"default_bind": seen["default"], "explicit_bind": seen["0.0.0.0"],
                                  "warning_on_non_loopback": True},
           title="/metrics /healthz /readyz bind address",
           reproduce="pytest tests/test_security.py::test_http_endpoints_bind_loopback_by_default_elsewhere_only_explicitly_with_a_warning")


# --------------------------------------------------------------------------- input bounds


def test_series_per_partition_is_bounded(broker, fresh_topic, daemon_bundle, inprocess_daemon):
    """More live series than ``window.max_series_per_partition``: the extra ones are dead-lettered
    (``series_limit``); the admitted ones are scored in full."""
    from streams.kafka import KafkaSettings, create_topics

    bs, topic = broker.bootstrap, fresh_topic
    create_topics(KafkaSettings(bootstrap_servers=bs), {topic: 1})
    admitted, extra = [f"ok{i}" for i in range(5)], [f"over{i}" for i in range(3)]
    produce_readings(bs, topic, admitted, 1)  # the first five series to show up take the five slots
    produce_readings(bs, topic, admitted + extra, 40, start=1)
    cfg = daemon_config(bs, topic, "g-" + topic, daemon_bundle, kafka__partitions=1,
                        window__max_series_per_partition=5)
    r = inprocess_daemon(cfg)
    want = expected_window_ids(admitted, 40, T, S)
    dlq = read_topic(bs, f"{topic}.dlq", min_count=3 * 39, timeout_s=60)
    got = read_topic(bs, f"{topic}.scores", min_count=len(want), timeout_s=60)
    r.stop()
    reasons = {dict(h)["anomon.reason"].decode() for _, _, h in dlq}
    keys = {k.decode() for k, _, _ in dlq}
    assert reasons == {"series_limit"} and keys == set(extra) and len(dlq) == 3 * 39
    assert set(score_ids(got)) == want
    record("security-series-limit", {"max_series_per_partition": 5, "series_sent": 8, "series_admitted": 5,
                                     "records_dead_lettered_series_limit": len(dlq)},
           title="number of live series bounded (window.max_series_per_partition)",
           notes="message bytes, samples, channels and series-id length: see poison input (too_large)",
           reproduce="pytest tests/test_security.py::test_series_per_partition_is_bounded")


def test_every_input_bound_is_a_validated_setting():
    from monitor.config import ConfigError, load_config

    cfg = load_config(None, env={})
    bounds = {"input.max_message_bytes": cfg.input.max_message_bytes, "input.max_samples": cfg.input.max_samples,
              "input.max_channels": cfg.input.max_channels, "input.max_poll_records": cfg.input.max_poll_records,
              "window.max_series_per_partition": cfg.window.max_series_per_partition,
              "scoring.max_batch": cfg.scoring.max_batch}
    assert all(isinstance(v, int) and v > 0 for v in bounds.values()), bounds
    for name in bounds:
        with pytest.raises(ConfigError, match=name.replace(".", r"\.")):
            load_config(None, env={}, overrides={name: 0})
    record("security-input-bounds", {k: v for k, v in bounds.items()} | {"series_id_chars": 256},
           title="input size bounds (defaults; each must be > 0)",
           reproduce="pytest tests/test_security.py::test_every_input_bound_is_a_validated_setting")


# --------------------------------------------------------------------------- Kafka TLS / SASL mapping


def test_daemon_kafka_tls_sasl_settings_reach_kafka_python_unchanged(secret_files, daemon_bundle, tmp_path,
                                                                     monkeypatch):
    """Config file + environment -> monitor.config -> the daemon's KafkaSettings -> kafka-python kwargs.

    (tests/test_kafka_settings.py covers KafkaSettings -> kwargs; this covers the daemon's path to it.)"""
    import dataclasses

    from monitor.config import KafkaSection, load_config
    from monitor.daemon import Daemon
    from streams.kafka import KafkaSettings

    toml = tmp_path / "secure.toml"
    toml.write_text("\n".join([
        "[kafka]", 'bootstrap_servers = "k1:9093,k2:9093"', 'client_id = "anomon-prod"',
        'security_protocol = "SASL_SSL"', 'sasl_mechanism = "SCRAM-SHA-512"', 'sasl_plain_username = "svc-anomon"',
        f'sasl_plain_password_file = "{secret_files["pw"]}"', f'ssl_cafile = "{secret_files["ca.pem"]}"',
        f'ssl_certfile = "{secret_files["client.pem"]}"', f'ssl_keyfile = "{secret_files["client.key"]}"',
        "ssl_check_hostname = false", "[model]", f'dir = "{daemon_bundle}"']) + "\n")
    monkeypatch.setenv("ANOMON_TEST_SSL_PW", SSL_PW)
    cfg = load_config(toml, env={"ANOMON_KAFKA__SSL_PASSWORD_ENV": "ANOMON_TEST_SSL_PW"})
    d = Daemon(cfg)  # builds its settings; connects to nothing
    kw = d.settings.to_kafka_python()
    assert kw == {
        "bootstrap_servers": "k1:9093,k2:9093", "client_id": "anomon-prod", "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "svc-anomon", "sasl_plain_password": SASL_PW,
        "ssl_cafile": secret_files["ca.pem"], "ssl_certfile": secret_files["client.pem"],
        "ssl_keyfile": secret_files["client.key"], "ssl_check_hostname": False, "ssl_password": SSL_PW,
    }
    _no_secret(repr(d.settings) + str(cfg.redacted()))
    # every connection setting of the daemon's config has a KafkaSettings field of the same name
    own = {f.name for f in dataclasses.fields(KafkaSection)} - {"partitions", "create_topics", "startup_timeout_s",
                                                                "client"}  # (which library, not a connection setting)
    assert own <= {f.name for f in dataclasses.fields(KafkaSettings)}
    record("security-kafka-mapping", {"settings_checked": len(kw), "unchanged": True,
                                      "not_configurable_in_daemon_config": sorted(
                                          {f.name for f in dataclasses.fields(KafkaSettings)} - own
                                          - {"options", "sasl_plain_password", "ssl_password"})},
           title="Kafka TLS/SASL settings: daemon config file + env -> kafka-python kwargs",
           reproduce="pytest tests/test_security.py::test_daemon_kafka_tls_sasl_settings_reach_kafka_python_unchanged")
