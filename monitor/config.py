"""The daemon's configuration: a TOML or YAML file, environment overrides, validation.

Precedence (lowest first): built-in defaults < config file < environment variables
``ANOMON_<SECTION>__<KEY>`` (double underscore between section and key, e.g.
``ANOMON_WINDOW__STRIDE=10``, ``ANOMON_KAFKA__BOOTSTRAP_SERVERS=broker:9092``) < command-line flags.

Errors name the field and where its value came from. Secrets (Kafka SASL/SSL passwords) are
given by ``*_env`` (name of an environment variable) or ``*_file`` (a file holding them); they
are never printed: :meth:`Config.redacted` replaces them with ``"***"``.

Examples
--------
>>> cfg = load_config(None, env={"ANOMON_WINDOW__STRIDE": "7", "ANOMON_INPUT__TOPICS": "a,b"})
>>> cfg.window.stride, cfg.input.topics, cfg.sources["window.stride"]
(7, ['a', 'b'], 'environment ANOMON_WINDOW__STRIDE')
>>> load_config(None, env={"ANOMON_INPUT__TOPICS": '["a","b"]'}).input.topics  # a JSON list works as well
['a', 'b']
>>> try:
...     load_config(None, env={"ANOMON_SCORING__MAX_BATCH": "many"})
... except ConfigError as e:
...     print(e)
scoring.max_batch: expected an integer, got 'many' (from environment ANOMON_SCORING__MAX_BATCH)
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.durations import parse_duration

from monitor.errors import ConfigError
from streams.records import RecordFormat
from streams.windowing import WindowSpec

log = logging.getLogger(__name__)

ENV_PREFIX = "ANOMON_"
_SECRET_WORDS = ("password", "secret", "token", "credential")


@dataclass
class KafkaSection:
    """Connection to Kafka (streams.kafka.KafkaSettings: mapped to librdkafka or passed to kafka-python).

    An empty ``bootstrap_servers`` starts the embedded broker (zero-config default)."""

    bootstrap_servers: str = ""
    #: the client library: "confluent" (confluent-kafka on librdkafka: cooperative-sticky assignment,
    #: read_committed, static membership for --workers) or "kafka-python"; see docs/kafka.md "Backends"
    client: str = "confluent"
    client_id: str = "anomon"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password_env: str | None = None
    sasl_plain_password_file: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password_env: str | None = None
    ssl_password_file: str | None = None
    ssl_check_hostname: bool = True
    #: partitions of topics the daemon creates (input topics when missing, outputs, progress)
    partitions: int = 4
    create_topics: bool = True
    #: ``anomon run`` waits this long (s) at start for a bootstrap server to answer, then exits with
    #: code 3 and one line naming the address (later outages are retried for ever)
    startup_timeout_s: float = 15.0


@dataclass
class InputSection:
    topics: list[str] = field(default_factory=lambda: ["anomon-readings"])
    group_id: str = "anomon"
    # record format: defaults are streams.records.RecordFormat's (one source of truth)
    series_field: str = RecordFormat.series_field
    ts_field: str = RecordFormat.ts_field
    value_field: str = RecordFormat.value_field
    values_field: str = RecordFormat.values_field
    period_field: str = RecordFormat.period_field
    ts_unit: str = RecordFormat.ts_unit
    max_message_bytes: int = RecordFormat.max_message_bytes
    max_samples: int = RecordFormat.max_samples
    max_channels: int = RecordFormat.max_channels
    #: readings stamped further ahead of the wall clock are dead-lettered (bad_field): one far-future
    #: reading would otherwise make every later reading of its series "late". 0 = no bound. The default
    #: (a year) tolerates as-fast-as-possible replays; set e.g. 3600 where event time follows wall time.
    max_future_s: float = 31_536_000.0
    max_poll_records: int = 2000
    #: how long a fetch waits for data (ms); it bounds the latency when the input is quiet
    fetch_max_wait_ms: int = 50
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 1_000
    #: /readyz answers 503 until this member owns partitions, and again once it has owned none (the group
    #: cannot be joined, or has no work for it) for this long (s)
    ready_timeout_s: float = 30.0
    #: readings without a Kafka key: "repartition" (re-sent to the repartition topic keyed by their series,
    #: so a series a keyless producer spread over partitions is windowed whole) or "partition" (windowed
    #: per partition as they come: only right when each series keeps to one partition)
    keyless: str = "repartition"
    #: the repartition topic; default "<group_id>.repartition"
    repartition_topic: str | None = None
    #: a keyless reading waits at most this long (s) for the other partitions to reach its timestamp
    repartition_hold_s: float = 5.0

    def record_format(self) -> RecordFormat:
        """The decoder's :class:`~streams.records.RecordFormat` from the fields both declare."""
        shared = {f.name for f in dataclasses.fields(RecordFormat)} & {f.name for f in dataclasses.fields(self)}
        return RecordFormat(**{name: getattr(self, name) for name in shared})


@dataclass
class WindowSection:
    #: 0 = take the window length the model was trained with
    length: int = 0
    #: 0 = take the model bundle's stride
    stride: int = 0
    # defaults are streams.windowing.WindowSpec's
    lateness_ms: float = WindowSpec.lateness_ms
    gap_ms: float | None = WindowSpec.gap_ms
    idle_ttl_s: float = WindowSpec.idle_ttl_s
    #: series idle this long (s) have their state packed (compressed) until their next reading
    pack_after_s: float = WindowSpec.pack_after_s
    max_series_per_partition: int = WindowSpec.max_series_per_partition


@dataclass
class ModelSection:
    #: model bundle directory (``anomon train`` / ``anomon demo`` write one)
    dir: str = ""
    #: seconds between checks for a changed model file (0 = only on SIGHUP)
    watch_interval_s: float = 5.0


@dataclass
class ScoringSection:
    max_batch: int = 256
    max_wait_ms: float = 50.0
    #: "calibrated" (fixed thresholds from training), "spot" or "dspot" (online EVT)
    threshold: str = "dspot"
    #: target false-positive rate of the online thresholds (SPOT's q)
    q: float = 1e-3
    dspot_depth: int = 50
    #: components whose threshold decides the anomalous flag (empty = the model bundle's choice)
    alert_components: list[str] = field(default_factory=list)
    #: hysteresis: consecutive anomalous windows to open an alert, normal windows to close it
    open_after: int = 1
    close_after: int = 3
    #: an open alert of a series that sent nothing scored for this long (s, processing time) is ended
    #: with "reason": "stale" (a series that stopped sending would otherwise stay in alert for ever); 0 = never
    alert_stale_s: float = 600.0
    drift: bool = True
    drift_delta: float = 0.002
    #: BLAS threads (numpy/scipy) while the daemon runs; 0 = leave as is. One: micro-batches gain
    #: little from more, and an idle BLAS worker spins on the core the Kafka client needs (the
    #: bench's VRAE: 2,584 -> 2,761 windows/s end to end, median of 3)
    blas_threads: int = 1
    #: a slow model (calls averaging over 2 ms) scores in a child process instead of a thread of the
    #: daemon's, so it does not share the interpreter with the Kafka client (the thread scores while the
    #: child loads the model, and takes over if the child fails). Off by default: on the streaming
    #: bench's VRAE case it did not beat the thread (median of 6 runs 0.75 of model-only vs 0.78 of 3)
    child_process: bool = False
    #: add "explain" (the top channels by share of the score, the span of steps that contributes most) to
    #: the score records of anomalous windows and to alert "start" events; for detectors that can explain
    #: (docs/explain.md). Costs one more model pass per anomalous window
    explain: bool = False
    #: channels named per explanation (1 to 10; at most the model's channels)
    explain_top_k: int = 3
    #: decide anomalous windows on each series' anomaly likelihood (Ahmad et al. 2017,
    #: models/anomaly_likelihood.py): how unusual the series' recent primary scores are under its own
    #: long-run score distribution, so one model serves noisy and calm series alike. Score records get an
    #: "anomaly_likelihood" column (the log form, 0..1). The SPOT thresholds still adapt but do not decide
    likelihood: bool = False
    #: the log likelihood at or above which a window is anomalous (0.5: a tail probability of 1e-5)
    likelihood_threshold: float = 0.5
    #: windows of a series before its scores enter its distribution (they settle meanwhile), then
    #: likelihood_window windows of history (memory: ~32 bytes a window and series)
    likelihood_learning: int = 288
    likelihood_window: int = 1000


@dataclass
class OutputSection:
    scores_topic: str = "anomon-scores"
    alerts_topic: str = "anomon-alerts"
    dlq_topic: str = "anomon-dlq"
    #: per-partition progress (where each series' next window starts); default "<group_id>.progress"
    progress_topic: str = ""
    commit_interval_s: float = 2.0
    linger_ms: int = 5
    #: producer batch size (bytes per partition batch; kafka-python's default is 16 KiB): batches still
    #: close after linger_ms, so a larger size costs no latency and saves per-batch work at high rates
    batch_bytes: int = 262_144


@dataclass
class HttpSection:
    enabled: bool = True
    #: loopback by default; any other address must be set explicitly (a warning is logged)
    host: str = "127.0.0.1"
    port: int = 9108


@dataclass
class RunSection:
    #: daemon processes in one consumer group under one supervisor (``anomon run --workers N``): one
    #: process decodes, windows and writes on one interpreter, so at stride 1 a second core needs a
    #: second process (see monitor/workers.py). More than the input's partitions leaves some idle.
    workers: int = 1
    #: with kafka.client = "confluent", each worker joins with a fixed group.instance.id (static
    #: membership: a worker restarted within the session timeout gets its partitions back without a
    #: rebalance of the others). Off by default: on Tansu (the embedded broker) a restarted static member
    #: was sometimes never assigned again (tests/test_workers.py, the killed-worker case, 2 of 5 runs);
    #: turn it on against Apache Kafka
    static_membership: bool = False


@dataclass
class RetrainSection:
    """Retraining from inside the daemon (see :mod:`monitor.retrain_schedule`); off unless ``every`` or
    ``after_drift_events`` is set. The model must be served from a registry (``REGISTRY/NAME/current``)."""

    #: retrain this long after the current version was promoted or last retrained ("24h", "90m", "1d"); "" = never
    every: str = ""
    #: also retrain after this many drift events (ADWIN on the scores, ``scoring.drift``); 0 = never
    after_drift_events: int = 0
    #: the history a retrain reads from the input topics: this long back ("6h") ...
    since: str = "6h"
    #: ... or, when > 0, the last N records of each partition instead
    last: int = 0
    #: newest share of each series' windows held back to validate the candidate
    validation_fraction: float = 0.2
    #: refuse a candidate whose false-positive rate on the held-back windows is over this x the target
    max_fpr_factor: float = 3.0
    #: epochs of the new fit (0: the current version's)
    epochs: int = 0
    #: never start two retrains of a model closer than this (drift storms; a refused candidate)
    min_interval_s: float = 600.0
    #: a retrain running longer is stopped and counted as failed
    timeout_s: float = 3600.0

    @property
    def enabled(self) -> bool:
        return bool(self.every.strip()) or self.after_drift_events > 0


@dataclass
class Config:
    kafka: KafkaSection = field(default_factory=KafkaSection)
    input: InputSection = field(default_factory=InputSection)
    window: WindowSection = field(default_factory=WindowSection)
    model: ModelSection = field(default_factory=ModelSection)
    scoring: ScoringSection = field(default_factory=ScoringSection)
    output: OutputSection = field(default_factory=OutputSection)
    http: HttpSection = field(default_factory=HttpSection)
    run: RunSection = field(default_factory=RunSection)
    retrain: RetrainSection = field(default_factory=RetrainSection)
    #: ``[[models]]`` entries (many models in one daemon, see :mod:`monitor.routing`); empty: ``model.dir``
    models: list = field(default_factory=list)
    #: where each non-default value came from: {"section.key": "config file X" | "environment VAR" | "command line"}
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: dataclasses.asdict(getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.name not in ("sources", "models")}

    def redacted(self) -> dict[str, Any]:
        """The effective config as a dict, secrets replaced by ``"***"`` (env/file *names* are kept)."""
        out = self.to_dict()
        for sec in out.values():
            for k, v in list(sec.items()):
                if any(w in k for w in _SECRET_WORDS) and not (k.endswith("_env") or k.endswith("_file")) and v:
                    sec[k] = "***"
        return out

    def kafka_settings(self, bootstrap: str | None = None) -> Any:
        """A :class:`streams.kafka.KafkaSettings` for this config (``bootstrap`` overrides)."""
        from streams.kafka import KafkaConfigError, KafkaSettings

        k = dataclasses.asdict(self.kafka)
        k.pop("partitions")
        k.pop("create_topics")
        k.pop("startup_timeout_s")
        k.pop("client")
        k["bootstrap_servers"] = bootstrap or k["bootstrap_servers"]
        k = {key: v for key, v in k.items() if v is not None}
        try:
            return KafkaSettings.from_dict(k, where="kafka")
        except KafkaConfigError as exc:
            raise ConfigError(f"{exc} (from {self._where('kafka')})") from None

    def _where(self, section: str) -> str:
        srcs = sorted({v for k, v in self.sources.items() if k.startswith(section + ".")})
        return ", ".join(srcs) or "defaults"

    @property
    def progress_topic(self) -> str:
        return self.output.progress_topic or f"{self.input.group_id}.progress"

    @property
    def repartition_topic(self) -> str | None:
        """Where keyless readings are re-sent keyed by series (None when ``input.keyless`` is "partition")."""
        if self.input.keyless != "repartition":
            return None
        return self.input.repartition_topic or f"{self.input.group_id}.repartition"


# --------------------------------------------------------------------------- loading


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            import tomllib

            data = tomllib.loads(text)
    except Exception as exc:  # tomllib.TOMLDecodeError, yaml.YAMLError
        raise ConfigError(f"config file {path}: cannot parse: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of sections at the top level")
    return data


def _convert(value: Any, tp: Any, name: str, where: str) -> Any:
    """Convert ``value`` (from a file or a string from the environment) to the field type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _convert(value, inner, name, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected true or false, got {value!r} (from {where})")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected an integer, got {value!r} (from {where})")
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected an integer, got {value!r} (from {where})") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected a number, got {value!r} (from {where})")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a number, got {value!r} (from {where})") from None
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{name}: expected a string, got {value!r} (from {where})")
        return str(value)
    if origin is list:
        if isinstance(value, str) and value.strip().startswith("["):
            try:
                value = json.loads(value)
            except ValueError:
                raise ConfigError(f"{name}: {value!r} starts like a JSON list but is not one; write a JSON list "
                                  f"such as [\"a\",\"b\"] or a comma-separated one such as a,b (from {where})") from None
        elif isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{name}: expected a list, got {value!r} (from {where})")
        return [_convert(v, args[0], name, where) for v in value]
    return value


_SECTIONS = {f.name: f.type for f in dataclasses.fields(Config) if f.name not in ("sources", "models")}


def _section_cls(name: str) -> type:
    return {"kafka": KafkaSection, "input": InputSection, "window": WindowSection, "model": ModelSection,
            "scoring": ScoringSection, "output": OutputSection, "http": HttpSection,
            "run": RunSection, "retrain": RetrainSection}[name]


def _apply_one(cfg: Config, section: str, key: str, value: Any, where: str) -> None:
    if section not in _SECTIONS:
        raise ConfigError(f"{section}: unknown section (from {where}); known: {', '.join(_SECTIONS)}")
    cls = _section_cls(section)
    hints = typing.get_type_hints(cls)
    if key not in hints:
        if section == "kafka" and any(w in key for w in _SECRET_WORDS) and not key.endswith(("_env", "_file")):
            raise ConfigError(f"kafka.{key}: secrets are not written in config; give kafka.{key}_env "
                              f"(an environment variable) or kafka.{key}_file (from {where})")
        raise ConfigError(f"{section}.{key}: unknown setting (from {where}); known: {', '.join(hints)}")
    setattr(getattr(cfg, section), key, _convert(value, hints[key], f"{section}.{key}", where))
    cfg.sources[f"{section}.{key}"] = where


def load_config(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None,
                overrides: dict[str, Any] | None = None, problems: list[ConfigError] | None = None) -> Config:
    """Defaults < file (TOML, or YAML by extension) < environment < ``overrides`` ({"section.key": value}).

    ``problems``: a list that collects every error (each bad value keeps its default) instead of
    raising at the first; a file that cannot be read is still raised at once."""
    cfg = Config()
    found: list[ConfigError] = []

    def _apply(*a: Any) -> None:
        try:
            _apply_one(*a)
        except ConfigError as exc:
            found.append(exc)

    env = os.environ if env is None else env
    if path:
        p = Path(path)
        where = f"config file {p}"
        for section, body in _read_file(p).items():
            if section == "models":
                from monitor.routing import parse_models

                try:
                    cfg.models = parse_models(body, where)
                    cfg.sources["models"] = where
                except ConfigError as exc:
                    found.append(exc)
                continue
            if not isinstance(body, dict):
                raise ConfigError(f"{section}: expected a table of settings (from {where})")
            for key, value in body.items():
                _apply(cfg, section, key, value, where)
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or "__" not in var:
            continue
        section, _, key = var[len(ENV_PREFIX):].partition("__")
        section, key = section.lower(), key.lower()
        if section not in _SECTIONS:
            continue  # other ANOMON_* variables (ANOMON_DATA, ...) are not config
        _apply(cfg, section, key, env[var], f"environment {var}")
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        _apply(cfg, section, key, value, "command line")
    validate(cfg, found)
    if problems is not None:
        problems.extend(found)
    elif found:
        raise _first(found)
    return cfg


def validate(cfg: Config, problems: list[ConfigError] | None = None) -> None:
    """Check values and relations; raise :class:`ConfigError` naming the field and its source.

    ``problems``: a list to append every error to instead (``--check-config`` reports them all)."""
    found: list[ConfigError] = []
    fail = found.append

    def err(name: str, msg: str) -> ConfigError:
        return ConfigError(f"{name}: {msg} (from {cfg.sources.get(name, 'defaults')})")

    def positive(name: str, allow_zero: bool = False) -> None:
        section, key = name.split(".")
        v = getattr(getattr(cfg, section), key)
        if v is None:
            return
        if v < 0 or (v == 0 and not allow_zero):
            fail(err(name, f"must be {'>= 0' if allow_zero else '> 0'}, got {v}"))

    for name in ("kafka.partitions", "input.max_message_bytes", "input.max_samples", "input.max_channels",
                 "input.max_poll_records", "input.fetch_max_wait_ms", "scoring.max_batch", "scoring.q", "scoring.open_after",
                 "scoring.close_after", "scoring.dspot_depth", "output.commit_interval_s", "output.batch_bytes",
                 "window.max_series_per_partition", "window.idle_ttl_s", "window.gap_ms"):
        positive(name)
    for name in ("window.length", "window.stride", "window.lateness_ms", "scoring.max_wait_ms", "input.max_future_s",
                 "model.watch_interval_s", "http.port", "kafka.startup_timeout_s", "output.linger_ms", "window.pack_after_s",
                 "scoring.blas_threads"):
        positive(name, allow_zero=True)
    if not cfg.input.topics:
        fail(err("input.topics", "at least one input topic is needed"))
    if cfg.input.ts_unit not in ("ms", "s", "us", "iso"):
        fail(err("input.ts_unit", f"must be one of ms, s, us, iso; got {cfg.input.ts_unit!r}"))
    if cfg.kafka.client not in ("kafka-python", "confluent"):
        fail(err("kafka.client", f"must be one of kafka-python, confluent; got {cfg.kafka.client!r}"))
    if cfg.input.keyless not in ("repartition", "partition"):
        fail(err("input.keyless", f"must be one of repartition, partition; got {cfg.input.keyless!r}"))
    if cfg.repartition_topic is not None and cfg.repartition_topic in cfg.input.topics:
        fail(err("input.repartition_topic", f"{cfg.repartition_topic!r} is also an input topic; name another"))
    if cfg.scoring.threshold not in ("calibrated", "spot", "dspot"):
        fail(err("scoring.threshold", f"must be calibrated, spot or dspot; got {cfg.scoring.threshold!r}"))
    if not 0 < cfg.scoring.q < 0.02:
        fail(err("scoring.q", f"must be in (0, 0.02) (SPOT's peaks are the top 2%); got {cfg.scoring.q}"))
    if not 0 < cfg.scoring.likelihood_threshold < 1:
        fail(err("scoring.likelihood_threshold", f"must lie in (0, 1), got {cfg.scoring.likelihood_threshold}"))
    positive("scoring.likelihood_learning", allow_zero=True)
    if cfg.scoring.likelihood_window < 100:
        fail(err("scoring.likelihood_window", f"must be at least 100 windows, got {cfg.scoring.likelihood_window}"))
    if not 1 <= cfg.scoring.explain_top_k <= 10:
        fail(err("scoring.explain_top_k", f"must be between 1 and 10, got {cfg.scoring.explain_top_k}"))
    if not 1 <= cfg.run.workers <= 64:
        fail(err("run.workers", f"must be between 1 and 64, got {cfg.run.workers}"))
    rt = cfg.retrain
    for key in ("every", "since"):
        if getattr(rt, key).strip():
            try:
                if parse_duration(getattr(rt, key)) <= 0:
                    raise ValueError(f"{getattr(rt, key)!r} must be positive")
            except ValueError as exc:
                fail(err(f"retrain.{key}", str(exc)))
    for name in ("retrain.after_drift_events", "retrain.last", "retrain.epochs", "retrain.min_interval_s"):
        positive(name, allow_zero=True)
    positive("retrain.timeout_s")
    if not 0 < rt.validation_fraction < 0.5:
        fail(err("retrain.validation_fraction", f"must lie in (0, 0.5), got {rt.validation_fraction}"))
    if rt.max_fpr_factor < 1:
        fail(err("retrain.max_fpr_factor", f"must be at least 1, got {rt.max_fpr_factor}"))
    if cfg.http.port > 65535:
        fail(err("http.port", f"not a port number: {cfg.http.port}"))
    outs = [cfg.output.scores_topic, cfg.output.alerts_topic, cfg.output.dlq_topic]
    for t in cfg.input.topics:
        if t in outs:
            fail(err("input.topics", f"topic {t!r} is also an output topic"))
    if cfg.kafka.security_protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
        fail(err("kafka.security_protocol", f"must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; got "
                  f"{cfg.kafka.security_protocol!r}"))
    if cfg.kafka.bootstrap_servers and cfg.kafka.security_protocol != "PLAINTEXT":
        try:
            cfg.kafka_settings()  # validates SASL/SSL settings (reads the secrets; never prints them)
        except ConfigError as exc:
            fail(exc)
    if cfg.models:
        _validate_models(cfg, err, fail)
    if problems is not None:
        problems.extend(found)
    elif found:
        raise _first(found)


def _validate_models(cfg: Config, err: Any, fail: Any) -> None:
    """``[[models]]`` against the rest: no ``model.dir`` beside them, topics among the inputs, every input read."""
    from monitor.routing import Router

    where = cfg.sources.get("models", "defaults")
    if cfg.model.dir:
        fail(err("model.dir", "give either model.dir (one model) or [[models]] entries, not both"))
    for e in cfg.models:
        for t in e.topics:
            if t not in cfg.input.topics:
                fail(ConfigError(f"models ({e.name}).match.topic: {t!r} is not one of input.topics "
                                 f"{cfg.input.topics} (from {where})"))
    router = Router(cfg.models)
    for t in cfg.input.topics:
        if router.dead_letter_owner(t, cfg.input.topics) is None:
            fail(ConfigError(f"input.topics: no [[models]] entry can match topic {t!r}; add one (or a default "
                             f"entry) or remove the topic (from {where})"))


def _first(found: list[ConfigError]) -> ConfigError:
    """The first of several errors, saying how many more there are."""
    if len(found) == 1:
        return found[0]
    return ConfigError(f"{found[0]} (and {len(found) - 1} more; `anomon run --check-config` lists them all)")




def dump(cfg: Config) -> str:
    """The effective config, secrets redacted, with the source of every non-default value (for --check-config)."""
    lines = ["# effective anomon config (secrets redacted)"]
    red = cfg.redacted()
    for section, body in red.items():
        lines.append(f"\n[{section}]")
        for k, v in body.items():
            src = cfg.sources.get(f"{section}.{k}")
            comment = f"  # {src}" if src else ""
            if v is None:
                lines.append(f"# {k} = (unset){comment}")
            else:
                lines.append(f"{k} = {json.dumps(v)}{comment}")
    for e in cfg.models:
        lines.append("\n[[models]]")
        lines.append(f"name = {json.dumps(e.name)}\ndir = {json.dumps(e.dir)}")
        if e.default:
            lines.append("default = true")
        rules = {"topic": e.topics, "series": e.series, "series_regex": e.series_regex.pattern if e.series_regex else None,
                 "header": {k: v.decode() for k, v in e.headers.items()}}
        rules = {k: v for k, v in rules.items() if v}
        if rules:
            def toml(v: Any) -> str:
                return "{ " + ", ".join(f"{k} = {json.dumps(x)}" for k, x in v.items()) + " }" if isinstance(v, dict) \
                    else json.dumps(v)

            lines.append(f"match = {toml({k: toml(v) if isinstance(v, dict) else v for k, v in rules.items()})}"
                         .replace('"{ ', "{ ").replace(' }"', " }").replace('\\"', '"'))
        for k, v in e.overrides.items():
            lines.append(f"{k.split('.')[1]} = {json.dumps(v)}  # {k}")
    return "\n".join(lines) + "\n"
