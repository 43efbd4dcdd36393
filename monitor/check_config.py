"""``anomon run --check-config``: everything that can be checked without starting, reported at once.

It prints the effective config (secrets redacted, each value's source), then checks what ``anomon
run`` would need: every config value (all errors, not only the first), the model bundle
(``model.dir`` loads, its window length matches ``window.length``), each secret's source (the
environment variable is set, the file is readable; the value itself is never printed) and,
for the alert components, that the model has them. Returns the list of problems (one line each).
"""
from __future__ import annotations

from typing import Any

from monitor.config import Config, load_config
from monitor.errors import UserError

_SECRETS = ("sasl_plain_password", "ssl_password")


def secret_sources(cfg: Config) -> tuple[list[str], list[str]]:
    """``(facts, problems)`` about each configured secret's source; values are never read out."""
    import os
    from pathlib import Path

    facts, problems = [], []
    k = cfg.kafka
    for name in _SECRETS:
        env, path = getattr(k, f"{name}_env"), getattr(k, f"{name}_file")
        if env and path:
            problems.append(f"kafka.{name}: give only one of kafka.{name}_env and kafka.{name}_file")
        elif env:
            if env in os.environ:
                facts.append(f"kafka.{name}: from environment variable {env} (set)")
            else:
                problems.append(f"kafka.{name}_env: environment variable {env} is not set; export it or fix "
                                f"kafka.{name}_env")
        elif path:
            p = Path(path).expanduser()
            try:
                p.read_bytes()
                facts.append(f"kafka.{name}: from file {p} (readable)")
            except OSError as exc:
                problems.append(f"kafka.{name}_file: cannot read {p}: {exc.strerror or exc}")
    if k.sasl_mechanism and not k.sasl_plain_username and k.security_protocol.startswith("SASL"):
        problems.append("kafka.sasl_plain_username: SASL is configured but no user name is given")
    return facts, problems


def check(path: str | None, overrides: dict[str, Any], env: dict[str, str] | None = None) -> tuple[Config, list[str], list[str]]:
    """``(config, facts, problems)`` for ``anomon run --check-config``."""
    errs: list = []
    cfg = load_config(path, env=env, overrides=overrides, problems=errs)
    problems = [str(e) for e in errs]
    facts, secret_problems = secret_sources(cfg)
    problems += [p for p in secret_problems if not any(p.split(":")[0] in q for q in problems)]
    if cfg.models:
        from monitor.lanes import lane_config
        from monitor.modelstore import load_bundle
        from monitor.routing import Router

        router = Router(cfg.models)
        for e in cfg.models:
            try:  # the entry's own settings, converted and validated as the lane will be built
                lc = lane_config(cfg, e, router)
            except UserError as exc:
                problems.append(str(exc))
            else:
                problems += _retrain_problems(lc, f"models ({e.name}).dir")
            try:
                b = load_bundle(e.dir)
            except Exception as exc:  # noqa: BLE001 - every failure is a finding here
                problems.append(f"models ({e.name}).dir: {exc}")
            else:
                facts.append(f"models ({e.name}).dir: {e.dir} loads: {b}")
                comps = e.overrides.get("scoring.alert_components") or []
                bad = [c for c in comps if c not in b.components]
                if bad:
                    problems.append(f"models ({e.name}).alert_components: {bad} not among the model's components "
                                    f"{list(b.components)}")
    elif not cfg.model.dir:
        problems.append("model.dir: no model bundle given (use --model-dir DIR, model.dir in the config, or "
                        "ANOMON_MODEL__DIR)")
    else:
        from monitor.modelstore import load_bundle

        try:
            b = load_bundle(cfg.model.dir)
        except Exception as exc:  # noqa: BLE001 - every failure is a finding here
            problems.append(f"model.dir: {exc}" if not str(exc).startswith(("model", str(cfg.model.dir))) else str(exc))
        else:
            facts.append(f"model.dir: {cfg.model.dir} loads: {b}")
            problems += _retrain_problems(cfg, "model.dir")
            if cfg.window.length and cfg.window.length != b.length:
                problems.append(f"window.length: {cfg.window.length} differs from the model's window length {b.length}")
            bad = [c for c in cfg.scoring.alert_components if c not in b.components]
            if bad:
                problems.append(f"scoring.alert_components: {bad} not among the model's components {list(b.components)}")
            from monitor.explain import make_explainer

            try:
                make_explainer(b, cfg.scoring)
            except UserError as exc:
                problems.append(str(exc))
    return cfg, facts, problems


def _retrain_problems(cfg: Config, field: str) -> list[str]:
    """``[retrain]`` on: the model must be served from a registry (``REGISTRY/NAME/current``)."""
    if not cfg.retrain.enabled:
        return []
    from monitor.retrain_schedule import served_from_registry

    if served_from_registry(cfg.model.dir) is None:
        return [f"{field}: {cfg.model.dir} is not a registry's NAME/current, and [retrain] is on: a retrained "
                "version would have nowhere to go (anomon models add NAME DIR; serve REGISTRY/NAME/current)"]
    return []
