"""Batch jobs: offline studies run as ``anomon batch JOB --out DIR``.

A job trains and evaluates detectors on a fixed protocol (see ``../shared/PROTOCOLS.md``)
and writes ``DIR/metrics.json`` and ``DIR/report.html``; models it keeps are saved
with :meth:`models.base.Detector.save` (``config.json`` + ``weights.safetensors``,
never pickle) under ``DIR/models/``.

Adding a job
------------
Write a module under ``monitor/batch/`` (or anywhere importable), define a function
``run(out_dir, cfg, progress) -> dict`` and register it::

    from monitor.batch import Job, register_job

    def _run(out_dir, cfg, progress):
        for seed in progress(cfg["seeds"], desc="seeds"):
            ...                                   # fit, score, evaluate
        report = Report("my job"); ...; report.write(out_dir)
        return {"f1": {...}}                      # becomes part of metrics.json

    register_job(Job(
        name="my-job",
        description="one line for `anomon batch --list`",
        run=_run,
        defaults={"seeds": 5, "data": None, "epochs": 10},
    ))

and add the module's dotted name to :data:`JOB_MODULES` (imported lazily, so a
missing optional module never breaks the others).

* ``out_dir`` is a :class:`pathlib.Path` that exists.
* ``cfg`` is the job's ``defaults`` updated by the config file and the command line.
  ``cfg["seeds"]`` is always a list of ints (the command line and config accept
  a count ``5`` = ``[0..4]`` or an explicit list ``0,3,7``).
  ``cfg["_job"]`` holds the name the job was started under.
* ``progress`` is a tqdm-like factory (:func:`models.torch_base.progress`):
  ``progress(iterable, desc=..., total=...)``.
* A job that can run on the user's own data declares ``"data"`` in its defaults;
  ``--data PATH`` (or ``data:`` in config) then sets ``cfg["data"]``. Jobs without it
  reject ``--data`` with a clear error.
* The framework writes ``metrics.json`` (the job's dict plus ``job``, ``config``,
  ``runtime_s``, ``finished``, ``complete``); it writes a plain ``report.html`` when the job wrote none.
* ``cfg["_checkpoint"](partial)`` writes ``metrics.json`` with the job's results so far
  (``"complete": false``); a job calls it after every seed and detector so that a stopped
  run leaves what it finished. A job that can continue such a run declares
  ``resumable=True``; under ``--resume`` it finds the stopped run's ``metrics.json`` in
  ``cfg["_previous"]`` (None on a fresh run) and skips what is there. The framework checks
  that the stopped run was the same job with the same settings (``threads`` aside).

Jobs declared in config
-----------------------
A YAML or JSON file (``--config FILE``) may override a built-in job's settings or
declare new jobs from a built-in one (``job:`` names the template)::

    batch:                       # optional wrapper; a top-level `jobs:` works too
      defaults: {threads: 1}     # applied to every job
      jobs:
        dagmm-thyroid: {seeds: 20}
        my-sensors:              # run with: anomon batch my-sensors --config FILE --out runs/x
          job: dagmm             # the template job
          data: /data/sensors.npz
          detector_params: {n_gmm: 4, epochs: 50}

Examples
--------
>>> from monitor.batch import Job, register_job, resolve_config, parse_seeds
>>> parse_seeds("3"), parse_seeds("0,5"), parse_seeds([1, 2])
([0, 1, 2], [0, 5], [1, 2])
>>> j = Job("doc-demo", "a doctest job", lambda out, cfg, progress: {"n": len(cfg["seeds"])}, {"seeds": 2, "data": None})
>>> _ = register_job(j, replace=True)
>>> cfg = resolve_config("doc-demo", overrides={"seeds": "0,1,2", "data": "x.npz"})
>>> cfg["seeds"], cfg["data"]
([0, 1, 2], 'x.npz')
>>> _ = _JOBS.pop("doc-demo")
"""
from __future__ import annotations

import copy
import importlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.errors import ConfigError, UserError

log = logging.getLogger("anomon.batch")

ProgressFactory = Callable[..., Any]
RunFn = Callable[[Path, dict, ProgressFactory], dict]

#: Modules whose import registers jobs. Missing modules are skipped.
JOB_MODULES: list[str] = [
    "monitor.batch.dagmm",
    "monitor.batch.oneclass",
    "monitor.batch.compare",
    "monitor.batch.mnist_ae",
    "monitor.batch.graph_vae",
]

#: Settings every job understands (the framework applies them).
COMMON_DEFAULTS: dict[str, Any] = {
    "seeds": 5,
    "threads": None,  # torch intra-op threads for the job (None = leave as is)
    "save_models": True,
}


@dataclass(frozen=True)
class Job:
    """A batch job.

    Parameters
    ----------
    name
        Command-line name (``anomon batch NAME``).
    description
        One line for ``anomon batch --list``.
    run
        ``run(out_dir: Path, cfg: dict, progress) -> dict`` of metrics (JSON-able).
    defaults
        Default configuration; ``"data"`` among the keys means the job accepts ``--data``.
    resumable
        The job reads ``cfg["_previous"]`` and continues a stopped run (``--resume``).
    """

    name: str
    description: str
    run: RunFn
    defaults: Mapping[str, Any] = field(default_factory=dict)
    resumable: bool = False

    @property
    def accepts_data(self) -> bool:
        return "data" in self.defaults


_JOBS: dict[str, Job] = {}
_loaded = False


def register_job(job: Job, replace: bool = False) -> Job:
    """Make ``job`` available by name. Returns it."""
    if not job.name or not isinstance(job.name, str):
        raise ValueError("a job needs a name")
    if job.name in _JOBS and not replace and _JOBS[job.name] is not job:
        raise ValueError(f"batch job {job.name!r} is already registered")
    _JOBS[job.name] = job
    return job


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    for mod in JOB_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name and (exc.name == mod or mod.startswith(exc.name + ".")):
                continue
            raise
    _loaded = True


def available_jobs() -> dict[str, Job]:
    """Every registered job, by name."""
    _load_builtin()
    return dict(sorted(_JOBS.items()))


def get_job(name: str) -> Job:
    """The job registered under ``name`` (raises :class:`UserError` naming the known ones)."""
    if name not in _JOBS:
        _load_builtin()
    try:
        return _JOBS[name]
    except KeyError:
        raise UserError(f"unknown batch job {name!r}; `anomon batch --list` shows the jobs") from None


# --------------------------------------------------------------------------- config
def parse_seeds(value: Any) -> list[int]:
    """``5`` or ``"5"`` → ``[0, 1, 2, 3, 4]``; ``"0,3"`` or ``[0, 3]`` → ``[0, 3]``."""
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            n = value
            if n < 1:
                raise ValueError
            return list(range(n))
        if isinstance(value, str):
            value = value.strip()
            if "," not in value and "-" not in value[1:]:
                return parse_seeds(int(value))
            out: list[int] = []
            for part in value.split(","):
                part = part.strip()
                if not part:
                    continue
                if "-" in part[1:]:
                    a, b = part.split("-", 1)
                    out.extend(range(int(a), int(b) + 1))
                else:
                    out.append(int(part))
            if not out:
                raise ValueError
            return out
        seeds = [int(v) for v in value]
        if not seeds:
            raise ValueError
        return seeds
    except (TypeError, ValueError):
        raise ConfigError(
            f"seeds: expected a count (5), a list (0,3,7) or a range (0-19), got {value!r}"
        ) from None


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the batch section of a YAML/JSON config file: ``{"defaults": {...}, "jobs": {...}}``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    text = p.read_text()
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError, json.JSONDecodeError
        raise ConfigError(f"{p}: cannot parse config: {exc}") from None
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    section = data.get("batch", data)
    if not isinstance(section, dict):
        raise ConfigError(f"{p}: `batch` must be a mapping")
    jobs = section.get("jobs") or {}
    defaults = section.get("defaults") or {}
    if not isinstance(jobs, dict) or not all(isinstance(v, dict) for v in jobs.values()):
        raise ConfigError(f"{p}: `jobs` must map job names to mappings of settings")
    if not isinstance(defaults, dict):
        raise ConfigError(f"{p}: `defaults` must be a mapping")
    return {"defaults": defaults, "jobs": jobs, "source": str(p)}


def _merge(base: dict[str, Any], upd: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in upd.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def resolve_job(name: str, file_cfg: Mapping[str, Any] | None = None) -> tuple[Job, dict[str, Any]]:
    """The job for ``name`` and its config before command-line overrides.

    ``name`` is a built-in job or one declared in the config file (with ``job:`` naming
    its template).
    """
    file_cfg = file_cfg or {"defaults": {}, "jobs": {}}
    declared = dict(file_cfg.get("jobs", {}).get(name, {}))
    template = declared.pop("job", None)
    if template is not None:
        if template == name:
            template = None
        elif template in file_cfg.get("jobs", {}) and "job" in file_cfg["jobs"][template]:
            raise ConfigError(f"job {name!r}: template {template!r} must be a built-in job")
    job = get_job(template or name)
    cfg = _merge(COMMON_DEFAULTS, job.defaults)
    unknown = [k for k in {**file_cfg.get("defaults", {}), **declared} if k not in cfg]
    if unknown:
        src = file_cfg.get("source", "config")
        raise ConfigError(
            f"{src}: job {name!r} does not know setting(s) {sorted(unknown)}; known: {sorted(cfg)}"
        )
    cfg = _merge(cfg, file_cfg.get("defaults", {}))
    cfg = _merge(cfg, declared)
    return job, cfg


def resolve_config(
    name: str,
    config_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Final config of job ``name``: defaults ← config file ← ``overrides`` (None values ignored)."""
    file_cfg = read_config_file(config_file) if config_file else None
    job, cfg = resolve_job(name, file_cfg)
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        if k == "data" and not job.accepts_data:
            raise UserError(f"job {name!r} runs on a fixed benchmark and does not take --data")
        if k not in cfg:
            raise ConfigError(f"job {name!r} does not know setting {k!r}; known: {sorted(cfg)}")
        cfg[k] = v
    cfg["seeds"] = parse_seeds(cfg["seeds"])
    return cfg


# --------------------------------------------------------------------------- running
#: settings that may differ between a stopped run and its ``--resume``
RESUME_MAY_DIFFER = ("threads",)


def terminal_progress(iterable=None, **kw):
    """A tqdm progress bar on stderr when stderr is a terminal; silent otherwise (pipes, logs, tests)."""
    import sys

    from models.torch_base import progress

    if not sys.stderr.isatty():
        kw["disable"] = True
    return progress(iterable, **kw)


def _previous_run(name: str, out: Path, cfg: Mapping[str, Any]) -> dict[str, Any]:
    p = out / "metrics.json"
    if not p.is_file():
        raise UserError(f"--resume: {p} not found; there is no stopped run to continue (run without --resume)")
    try:
        prev = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"--resume: {p} is not valid JSON ({exc}); run without --resume into a new --out") from None
    if prev.get("job") != name:
        raise UserError(f"--resume: {out} holds a run of job {prev.get('job')!r}, not {name!r}")
    old = json.loads(json.dumps(prev.get("config") or {}, default=str))
    new = json.loads(json.dumps(dict(cfg), default=str))
    diff = sorted(k for k in set(old) | set(new) if k not in RESUME_MAY_DIFFER and old.get(k) != new.get(k))
    if diff:
        raise UserError(f"--resume: {out} was started with other settings ({', '.join(diff)} differ); "
                        "resume with the same settings, or start a new run in another --out")
    return prev


def run_job(
    name: str,
    out_dir: str | os.PathLike[str],
    config_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: ProgressFactory | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Run a job: resolve its config, run it, write ``metrics.json`` (+ a fallback report).

    With ``resume``, continue the stopped run in ``out_dir`` (the job must be resumable and
    the settings the same).
    """
    from monitor.report import Report, write_metrics

    file_cfg = read_config_file(config_file) if config_file else None
    job, _ = resolve_job(name, file_cfg)
    cfg = resolve_config(name, config_file, overrides)
    out = Path(out_dir)
    previous = None
    if resume:
        if not job.resumable:
            raise UserError(f"job {name!r} cannot resume a stopped run (only {', '.join(sorted(n for n, j in available_jobs().items() if j.resumable))} can); run it again without --resume")
        previous = _previous_run(name, out, cfg)
    out.mkdir(parents=True, exist_ok=True)
    prog = progress or terminal_progress
    log.info("batch job %s → %s (seeds %s)%s", name, out, cfg["seeds"], " resuming" if previous else "")
    t0 = time.perf_counter()
    before_s = float((previous or {}).get("runtime_s") or 0.0)

    def header(complete: bool) -> dict[str, Any]:
        return {"job": name, "template": job.name, "config": cfg,
                "runtime_s": round(before_s + time.perf_counter() - t0, 3),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) if complete else None,
                "complete": complete}

    def checkpoint(partial: Mapping[str, Any]) -> None:
        write_metrics(out, {**header(False), **partial})

    threads = cfg.get("threads")
    if threads:
        import torch

        old = torch.get_num_threads()
        torch.set_num_threads(int(threads))
    try:
        result = job.run(out, {**cfg, "_job": name, "_checkpoint": checkpoint, "_previous": previous}, prog)
    finally:
        if threads:
            torch.set_num_threads(old)
    if not isinstance(result, dict):
        raise TypeError(f"job {job.name}: run() must return a dict, got {type(result).__name__}")
    metrics = {**header(True), **result}
    runtime = metrics["runtime_s"]
    write_metrics(out, metrics)
    if not (out / "report.html").exists():
        rep = Report(f"anomon batch {name}")
        rep.text(job.description)
        rep.json(metrics)
        rep.write(out)
    log.info("batch job %s done in %.1f s: %s", name, runtime, out / "metrics.json")
    return metrics


__all__ = [
    "COMMON_DEFAULTS",
    "JOB_MODULES",
    "Job",
    "available_jobs",
    "get_job",
    "parse_seeds",
    "read_config_file",
    "register_job",
    "resolve_config",
    "resolve_job",
    "run_job",
    "terminal_progress",
]
