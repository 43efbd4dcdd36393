"""KafkaSettings: the mapping to kafka-python, validation, and secrets that never leak."""
from __future__ import annotations

import logging
import pickle

import pytest

from streams.kafka import KafkaAdminClient, KafkaConfigError, KafkaConsumer, KafkaProducer, KafkaSettings, Secret


@pytest.fixture
def tls_files(tmp_path):
    paths = {}
    for name in ("ca.pem", "client.pem", "client.key", "crl.pem"):
        p = tmp_path / name
        p.write_text("-----BEGIN CERTIFICATE-----\n")
        paths[name] = str(p)
    return paths


def test_defaults_map_to_plaintext():
    assert KafkaSettings().to_kafka_python() == {
        "bootstrap_servers": "127.0.0.1:9092",
        "client_id": "anomon",
        "security_protocol": "PLAINTEXT",
    }


def test_full_mapping_is_passed_through_unchanged(tls_files):
    s = KafkaSettings(
        bootstrap_servers=["k1:9093", "k2:9093"],
        client_id="anomon-prod",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username="svc-anomon",
        sasl_plain_password="s3cr3t-pw",
        ssl_cafile=tls_files["ca.pem"],
        ssl_certfile=tls_files["client.pem"],
        ssl_keyfile=tls_files["client.key"],
        ssl_crlfile=tls_files["crl.pem"],
        ssl_password="key-pass",
        ssl_ciphers="ECDHE+AESGCM",
        ssl_check_hostname=False,
        request_timeout_ms=15000,
        api_version="3.9",
        options={"connections_max_idle_ms": 60000},
    )
    assert s.to_kafka_python() == {
        "bootstrap_servers": ["k1:9093", "k2:9093"],
        "client_id": "anomon-prod",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc-anomon",
        "sasl_plain_password": "s3cr3t-pw",
        "ssl_cafile": tls_files["ca.pem"],
        "ssl_certfile": tls_files["client.pem"],
        "ssl_keyfile": tls_files["client.key"],
        "ssl_crlfile": tls_files["crl.pem"],
        "ssl_password": "key-pass",
        "ssl_ciphers": "ECDHE+AESGCM",
        "ssl_check_hostname": False,
        "request_timeout_ms": 15000,
        "api_version": (3, 9),
        "connections_max_idle_ms": 60000,
    }


def test_every_mapped_key_is_a_kafka_python_setting(tls_files):
    s = KafkaSettings(
        security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_plain_username="u", sasl_plain_password="p",
        ssl_cafile=tls_files["ca.pem"], ssl_certfile=tls_files["client.pem"], ssl_keyfile=tls_files["client.key"],
        sasl_kerberos_service_name="kafka", request_timeout_ms=1000, api_version=(3, 9),
    )  # fmt: skip
    keys = set(s.to_kafka_python())
    for cls in (KafkaConsumer, KafkaProducer, KafkaAdminClient):
        assert keys <= set(cls.DEFAULT_CONFIG), (cls.__name__, keys - set(cls.DEFAULT_CONFIG))


def _all_text(s: KafkaSettings) -> str:
    return " ".join([repr(s), str(s), f"{s}", "%s" % s, "%r" % (s,), str(s.redacted()), repr(s.sasl_plain_password)])


def test_secrets_never_in_repr_str_or_logs(caplog, tmp_path):
    s = KafkaSettings(
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_plain_username="u",
        sasl_plain_password="TOPSECRET-1", ssl_password="TOPSECRET-2",
        options={"sasl_oauth_token": "TOPSECRET-3", "linger_ms": 5},
    )  # fmt: skip
    text = _all_text(s)
    assert "TOPSECRET" not in text
    assert "***" in text and "sasl_plain_username" in text
    with caplog.at_level(logging.INFO):
        logging.getLogger("anomon.test").info("settings: %s %r", s, s)
    assert "TOPSECRET" not in caplog.text
    assert s.to_kafka_python()["sasl_plain_password"] == "TOPSECRET-1"


def test_secret_type():
    sec = Secret("x1")
    assert (repr(sec), str(sec), f"{sec:>10}") == ("Secret('***')", "***", "***")
    assert sec == Secret("x1") and sec != Secret("x2") and sec.reveal() == "x1"
    with pytest.raises(TypeError):
        pickle.dumps(sec)


def test_password_from_env_and_file(monkeypatch, tmp_path):
    monkeypatch.setenv("ANOMON_TEST_KAFKA_PW", "from-env")
    base = dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="u")
    s = KafkaSettings(**base, sasl_plain_password_env="ANOMON_TEST_KAFKA_PW")
    assert s.to_kafka_python()["sasl_plain_password"] == "from-env"
    assert "from-env" not in _all_text(s)
    pw = tmp_path / "pw"
    pw.write_text("from-file\n")
    s = KafkaSettings(**base, sasl_plain_password_file=str(pw))
    assert s.to_kafka_python()["sasl_plain_password"] == "from-file"
    assert "from-file" not in _all_text(s)
    with pytest.raises(KafkaConfigError, match="ANOMON_TEST_MISSING is not set"):
        KafkaSettings(**base, sasl_plain_password_env="ANOMON_TEST_MISSING").to_kafka_python()
    with pytest.raises(KafkaConfigError, match="give only one"):
        KafkaSettings(**base, sasl_plain_password="a", sasl_plain_password_file=str(pw)).to_kafka_python()
    with pytest.raises(KafkaConfigError, match="cannot read"):
        KafkaSettings(**base, sasl_plain_password_file=str(tmp_path / "nope")).to_kafka_python()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"security_protocol": "TLS"}, "security_protocol"),
        ({"security_protocol": "SASL_SSL"}, "sasl_mechanism"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}, "sasl_plain_username"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_plain_username": "u"}, "sasl_plain_password"),
        ({"sasl_mechanism": "PLAIN"}, "SASL_PLAINTEXT or SASL_SSL"),
        ({"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"}, "ssl_cafile: file /nonexistent/ca.pem"),
        ({"bootstrap_servers": ""}, "bootstrap_servers"),
    ],
)
def test_validation_names_the_field(kwargs, match):
    with pytest.raises(KafkaConfigError, match=match):
        KafkaSettings(**kwargs).to_kafka_python()


def test_from_dict_and_from_env(monkeypatch):
    with pytest.raises(KafkaConfigError, match="unknown setting.*boostrap_servers"):
        KafkaSettings.from_dict({"boostrap_servers": "x:1"}, where="config.yaml kafka")
    s = KafkaSettings.from_dict({"bootstrap_servers": "x:1", "client_id": "c"})
    assert s.to_kafka_python()["bootstrap_servers"] == "x:1"
    monkeypatch.setenv("ANOMON_KAFKA_BOOTSTRAP_SERVERS", "envhost:9092")
    monkeypatch.setenv("ANOMON_KAFKA_SSL_CHECK_HOSTNAME", "false")
    monkeypatch.setenv("ANOMON_KAFKA_REQUEST_TIMEOUT_MS", "5000")
    e = KafkaSettings.from_env()
    assert (e.bootstrap_servers, e.ssl_check_hostname, e.request_timeout_ms) == ("envhost:9092", False, 5000)
