"""Config: file + env overrides, errors naming the field and its source, secrets never printed, --check-config."""
from __future__ import annotations

import pytest

from monitor.config import dump, load_config
from monitor.errors import ConfigError


def test_defaults_file_env_and_flags_in_order(tmp_path):
    f = tmp_path / "anomon.toml"
    f.write_text('[window]\nstride = 5\nlateness_ms = 20\n[input]\ntopics = ["a", "b"]\n')
    cfg = load_config(f, env={"ANOMON_WINDOW__STRIDE": "9"}, overrides={"input.group_id": "g2"})
    assert cfg.window.stride == 9 and cfg.window.lateness_ms == 20.0
    assert cfg.input.topics == ["a", "b"] and cfg.input.group_id == "g2"
    assert cfg.sources["window.stride"] == "environment ANOMON_WINDOW__STRIDE"
    assert cfg.sources["window.lateness_ms"] == f"config file {f}"
    assert cfg.sources["input.group_id"] == "command line"
    assert cfg.progress_topic == "g2.progress"


def test_yaml_file(tmp_path):
    f = tmp_path / "anomon.yaml"
    f.write_text("scoring:\n  threshold: spot\n  max_batch: 64\nhttp:\n  port: 0\n")
    cfg = load_config(f, env={})
    assert cfg.scoring.threshold == "spot" and cfg.scoring.max_batch == 64 and cfg.http.port == 0


@pytest.mark.parametrize("body,env,needle", [
    ('[window]\nstride = "ten"\n', {}, "window.stride: expected an integer, got 'ten' (from config file"),
    ('[window]\nstrid = 3\n', {}, "window.strid: unknown setting (from config file"),
    ('[nope]\nx = 1\n', {}, "nope: unknown section"),
    ('', {"ANOMON_SCORING__THRESHOLD": "magic"}, "scoring.threshold: must be calibrated, spot or dspot; got 'magic' "
                                                  "(from environment ANOMON_SCORING__THRESHOLD)"),
    ('', {"ANOMON_HTTP__ENABLED": "perhaps"}, "http.enabled: expected true or false"),
    ('[scoring]\nmax_batch = 0\n', {}, "scoring.max_batch: must be > 0"),
    ('[kafka]\nsasl_plain_password = "x"\n', {}, "kafka.sasl_plain_password: secrets are not written in config"),
    ('[window\n', {}, "cannot parse"),
])
def test_errors_name_the_field_and_the_source(tmp_path, body, env, needle):
    f = tmp_path / "c.toml"
    f.write_text(body)
    with pytest.raises(ConfigError) as e:
        load_config(f, env=env)
    assert needle in str(e.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})


def test_secrets_from_env_or_file_never_printed(tmp_path, monkeypatch, capsys, daemon_bundle):
    monkeypatch.setenv("KAFKA_PW", "s3cr3t-from-env")
    keyfile = tmp_path / "pw"
    keyfile.write_text("s3cr3t-from-file\n")
    env = {
        "ANOMON_KAFKA__BOOTSTRAP_SERVERS": "broker:9093",
        "ANOMON_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "ANOMON_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "ANOMON_KAFKA__SASL_PLAIN_USERNAME": "anomon",
        "ANOMON_KAFKA__SASL_PLAIN_PASSWORD_ENV": "KAFKA_PW",
    }
    cfg = load_config(None, env=env)
    text = dump(cfg) + repr(cfg) + str(cfg.redacted()) + repr(cfg.kafka_settings())
    assert "s3cr3t" not in text
    assert cfg.kafka_settings().to_kafka_python()["sasl_plain_password"] == "s3cr3t-from-env"
    env2 = dict(env)
    del env2["ANOMON_KAFKA__SASL_PLAIN_PASSWORD_ENV"]
    env2["ANOMON_KAFKA__SASL_PLAIN_PASSWORD_FILE"] = str(keyfile)
    cfg = load_config(None, env=env2)
    assert cfg.kafka_settings().to_kafka_python()["sasl_plain_password"] == "s3cr3t-from-file"
    assert "s3cr3t" not in dump(cfg)
    # the CLI: --check-config prints the effective config, redacted
    from monitor.cli import main

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["run", "--check-config", "--model-dir", str(daemon_bundle)]) == 0  # (it loads the bundle)
    out = capsys.readouterr().out
    assert "SCRAM-SHA-512" in out and "KAFKA_PW" in out and "s3cr3t" not in out


def test_missing_secret_env_names_the_field():
    env = {
        "ANOMON_KAFKA__BOOTSTRAP_SERVERS": "broker:9093",
        "ANOMON_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "ANOMON_KAFKA__SASL_MECHANISM": "PLAIN",
        "ANOMON_KAFKA__SASL_PLAIN_USERNAME": "u",
        "ANOMON_KAFKA__SASL_PLAIN_PASSWORD_ENV": "NOT_SET_ANYWHERE_123",
    }
    with pytest.raises(ConfigError, match="sasl_plain_password_env.*NOT_SET_ANYWHERE_123"):
        load_config(None, env=env)


def test_run_without_model_is_a_one_line_error(capsys, monkeypatch):
    from monitor.cli import main

    monkeypatch.delenv("ANOMON_MODEL__DIR", raising=False)
    assert main(["run", "--bootstrap-servers", "127.0.0.1:1"]) == 2
    assert "model.dir" in capsys.readouterr().err
