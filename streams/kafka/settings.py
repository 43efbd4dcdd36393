"""Connection settings: one schema for both client libraries, secrets never shown.

Part of :mod:`streams.kafka`.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.kafka._lib import KafkaConsumer
from streams.kafka.errors import KafkaConfigError


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")


_SECRET_WORDS = ("password", "secret", "token", "credential")


class Secret:
    """A string that never shows itself in ``repr``, ``str`` or f-strings.

    >>> s = Secret("hunter2")
    >>> s, str(s), f"{s}"
    (Secret('***'), '***', '***')
    >>> s.reveal()
    'hunter2'
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = str(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    __format__ = lambda self, spec: "***"  # noqa: E731

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self):  # never pickle a secret by accident
        raise TypeError("Secret values cannot be pickled")


def _read_secret(name: str, value: Any, env: str | None, path: str | None) -> Secret | None:
    given = [k for k, v in (("value", value), ("env", env), ("file", path)) if v]
    if len(given) > 1:
        raise KafkaConfigError(f"{name}: give only one of {name}, {name}_env, {name}_file (got {', '.join(given)})")
    if value is not None:
        return value if isinstance(value, Secret) else Secret(value)
    if env:
        if env not in os.environ:
            raise KafkaConfigError(f"{name}_env: environment variable {env} is not set")
        return Secret(os.environ[env])
    if path:
        p = Path(path).expanduser()
        try:
            return Secret(p.read_text().rstrip("\r\n"))
        except OSError as exc:
            raise KafkaConfigError(f"{name}_file: cannot read {p}: {exc.strerror or exc}") from exc
    return None


@dataclass
class KafkaSettings:
    """How to reach a Kafka cluster. Passed through to kafka-python unchanged.

    Secrets (``sasl_plain_password``, ``ssl_password``) can be given directly, by the
    name of an environment variable (``*_env``) or by a file holding them (``*_file``,
    one line; a trailing newline is dropped). They are kept as :class:`Secret` and
    never appear in ``repr``/``str``/:meth:`redacted`; :meth:`to_kafka_python` is the
    only place they are revealed.

    ``options`` holds any other kafka-python client setting, passed through verbatim
    (e.g. ``{"sasl_oauth_token_provider": provider, "connections_max_idle_ms": 60000}``).
    """

    bootstrap_servers: str | list[str] = "127.0.0.1:9092"
    client_id: str = "anomon"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: Secret | str | None = field(default=None, repr=False)
    sasl_plain_password_env: str | None = None
    sasl_plain_password_file: str | None = None
    sasl_kerberos_service_name: str | None = None
    sasl_kerberos_domain_name: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: Secret | str | None = field(default=None, repr=False)
    ssl_password_env: str | None = None
    ssl_password_file: str | None = None
    ssl_crlfile: str | None = None
    ssl_ciphers: str | None = None
    ssl_check_hostname: bool = True
    request_timeout_ms: int | None = None
    api_version: str | tuple[int, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("sasl_plain_password", "ssl_password"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, Secret):
                setattr(self, name, Secret(v))

    # ------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "kafka") -> "KafkaSettings":
        """Build from a config mapping; unknown keys are an error naming the key."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise KafkaConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        s = cls(**dict(data))
        s.validate(where=where)
        return s

    @classmethod
    def from_env(cls, prefix: str = "ANOMON_KAFKA_", **defaults: Any) -> "KafkaSettings":
        """Fields from environment variables ``PREFIX<FIELD>`` (e.g. ``ANOMON_KAFKA_BOOTSTRAP_SERVERS``)."""
        data: dict[str, Any] = dict(defaults)
        for f in dataclasses.fields(cls):
            if f.name == "options":
                continue
            raw = os.environ.get(prefix + f.name.upper())
            if raw is None:
                continue
            if f.name == "ssl_check_hostname":
                data[f.name] = raw.strip().lower() not in {"0", "false", "no", "off"}
            elif f.name == "request_timeout_ms":
                data[f.name] = int(raw)
            else:
                data[f.name] = raw
        return cls.from_dict(data, where=f"environment ({prefix}*)")

    # ------------------------------------------------------------ validation / mapping
    def validate(self, *, where: str = "kafka") -> None:
        if not self.bootstrap_servers:
            raise KafkaConfigError(f"{where}.bootstrap_servers: must name at least one host:port")
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise KafkaConfigError(
                f"{where}.security_protocol: {self.security_protocol!r} is not one of {', '.join(SECURITY_PROTOCOLS)}"
            )
        sasl = self.security_protocol.startswith("SASL_")
        if sasl:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise KafkaConfigError(
                    f"{where}.sasl_mechanism: {self.security_protocol} needs one of {', '.join(SASL_MECHANISMS)}"
                    f" (got {self.sasl_mechanism!r})"
                )
            if self.sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
                if not self.sasl_plain_username:
                    raise KafkaConfigError(f"{where}.sasl_plain_username: required for SASL {self.sasl_mechanism}")
                if self._password("sasl_plain_password") is None:
                    raise KafkaConfigError(
                        f"{where}.sasl_plain_password: required for SASL {self.sasl_mechanism} "
                        "(give it directly, or by sasl_plain_password_env / sasl_plain_password_file)"
                    )
        elif self.sasl_mechanism:
            raise KafkaConfigError(
                f"{where}.sasl_mechanism: set, but security_protocol is {self.security_protocol}; "
                "use SASL_PLAINTEXT or SASL_SSL"
            )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_crlfile"):
            v = getattr(self, name)
            if v and not Path(v).expanduser().is_file():
                raise KafkaConfigError(f"{where}.{name}: file {v} does not exist")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise KafkaConfigError(f"{where}.ssl_keyfile: given without ssl_certfile")
        self._password("ssl_password")

    def _password(self, name: str) -> Secret | None:
        return _read_secret(name, getattr(self, name), getattr(self, name + "_env"), getattr(self, name + "_file"))

    def to_kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for ``KafkaConsumer``/``KafkaProducer``/``KafkaAdminClient``.

        Only settings that were given are included, under kafka-python's own names,
        with their values unchanged (secrets revealed); ``options`` are merged last.
        """
        self.validate()
        out: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        for name in (
            "sasl_mechanism", "sasl_plain_username", "sasl_kerberos_service_name", "sasl_kerberos_domain_name",
            "ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_crlfile", "ssl_ciphers", "request_timeout_ms",
        ):  # fmt: skip
            v = getattr(self, name)
            if v is not None:
                out[name] = v
        if self.security_protocol in ("SSL", "SASL_SSL") or not self.ssl_check_hostname:
            out["ssl_check_hostname"] = self.ssl_check_hostname
        for name in ("sasl_plain_password", "ssl_password"):
            secret = self._password(name)
            if secret is not None:
                out[name] = secret.reveal()
        if self.api_version is not None:
            v = self.api_version
            out["api_version"] = tuple(int(x) for x in v.split(".")) if isinstance(v, str) else tuple(v)
        out.update(self.options)
        return out

    def redacted(self) -> dict[str, Any]:
        """The given settings as a JSON-able dict with secrets replaced by ``"***"`` (for logs)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None or v == f.default or (f.name == "options" and not v):
                if f.name not in ("bootstrap_servers", "security_protocol"):
                    continue
            if f.name == "options":
                v = {k: ("***" if any(w in k.lower() for w in _SECRET_WORDS) else _jsonable(x)) for k, x in v.items()}
            elif isinstance(v, Secret):
                v = "***"
            out[f.name] = _jsonable(v)
        return out

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"KafkaSettings({body})"

    __str__ = __repr__


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return repr(v)


_CONNECTION_KEYS = (
    "bootstrap_servers", "client_id", "security_protocol", "sasl_mechanism", "sasl_plain_username",
    "sasl_plain_password", "sasl_kerberos_name", "sasl_kerberos_service_name", "sasl_kerberos_domain_name",
    "sasl_oauth_token_provider", "ssl_context", "ssl_check_hostname", "ssl_cafile", "ssl_certfile",
    "ssl_keyfile", "ssl_crlfile", "ssl_password", "ssl_ciphers", "api_version", "request_timeout_ms",
    "client_dns_lookup", "proxy_url", "socket_options",
)  # fmt: skip


def _connection_config(source: KafkaSettings | KafkaConsumer | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(source, KafkaSettings):
        cfg = source.to_kafka_python()
    elif isinstance(source, KafkaConsumer):
        cfg = {k: source.config[k] for k in _CONNECTION_KEYS if k in source.config}
    else:
        cfg = dict(source)
    return cfg


# Settings a probe consumer must not inherit from a group consumer.
_CONSUMER_ONLY_EXCLUDE = frozenset({"group_id", "group_instance_id", "key_deserializer", "value_deserializer"})
