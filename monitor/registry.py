"""Model versions on disk: ``REGISTRY/NAME/VERSION/`` bundles and a ``current`` pointer per name.

::

    models/                       the registry (``--registry``, ``ANOMON_REGISTRY``, default ./models)
      pumps/
        4e3208aed812/             a complete bundle (anomon.json, config.json, weights.safetensors, ...)
        9b0c11d2aa07/
        current -> 9b0c11d2aa07   a symlink, replaced atomically (rename over the old one)
        history.json              every promotion: {"format": 1, "events": [{"version", "at", "action", "reason"}]}

The daemon serves ``REGISTRY/NAME/current`` (``model.dir``, or ``dir`` of a ``[[models]]`` entry):
its model watcher sees the files behind the pointer change and hot-swaps between micro-batches
(pending windows are scored by the old version first, so no window is lost or scored twice), and
every score record names the version that scored it. ``promote`` checks that the version loads and
scores before it moves the pointer; ``rollback`` moves it back to the version promoted before.

Examples
--------
>>> import tempfile, pathlib
>>> reg = Registry(tempfile.mkdtemp())
>>> reg.names()
[]
>>> reg.current("pumps") is None
True
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from monitor.errors import UserError

HISTORY_FORMAT = 1
CURRENT = "current"
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class RegistryError(UserError):
    """A registry operation that cannot be done; the message says which name, version or file."""


def default_registry() -> Path:
    """``ANOMON_REGISTRY``, else ``./models``."""
    return Path(os.environ.get("ANOMON_REGISTRY") or "models")


class Registry:
    """Bundles by name and version under one folder, with an atomically replaced ``current`` pointer."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser()

    # ------------------------------------------------------------------ reading
    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def versions(self, name: str) -> list[str]:
        """The versions of ``name``, oldest first (by the time they were added)."""
        d = self._dir(name)
        vs = [p for p in d.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
              and (p / "anomon.json").is_file()]
        added = {e["version"]: i for i, e in enumerate(self.history(name)) if e.get("action") == "add"}
        return [p.name for p in sorted(vs, key=lambda p: (added.get(p.name, -1), p.stat().st_mtime_ns, p.name))]

    def current(self, name: str) -> str | None:
        link = self.root / name / CURRENT
        if not link.is_symlink():
            return None
        return os.readlink(link).rstrip("/").split("/")[-1]

    def current_path(self, name: str) -> Path:
        """The path the daemon serves for ``name`` (the pointer, not the version it points at)."""
        return self.root / name / CURRENT

    def history(self, name: str) -> list[dict[str, Any]]:
        p = self.root / name / "history.json"
        if not p.is_file():
            return []
        try:
            h = json.loads(p.read_text())
        except ValueError as exc:
            raise RegistryError(f"{p}: corrupt (not JSON: {exc})") from None
        if not isinstance(h, dict) or h.get("format") != HISTORY_FORMAT or not isinstance(h.get("events"), list):
            raise RegistryError(f"{p}: format {h.get('format') if isinstance(h, dict) else None!r} is not "
                                f"supported (this anomon reads {HISTORY_FORMAT})")
        return h["events"]

    def describe(self, name: str) -> dict[str, Any]:
        """Versions with their detector, window, training time and thresholds; the current one marked."""
        cur = self.current(name)
        out = []
        for v in self.versions(name):
            meta = json.loads((self._dir(name) / v / "anomon.json").read_text())
            w = meta.get("window", {})
            out.append({"version": v, "current": v == cur, "detector": meta.get("detector"),
                        "window": f"{w.get('length')}x{w.get('channels')} stride {w.get('stride')}",
                        "created": meta.get("created"), "thresholds": meta.get("thresholds", {})})
        hist = self.history(name)
        return {"name": name, "current": cur, "versions": out, "history": hist,
                "refused": sum(1 for e in hist if e.get("action") == "refused")}

    # ------------------------------------------------------------------ writing
    def add(self, name: str, bundle_dir: str | os.PathLike[str], version: str | None = None) -> str:
        """Copy a bundle in as a new version of ``name`` (its own version string unless ``version``); the
        first version of a name becomes current. Returns the version."""
        from monitor.modelstore import load_bundle

        _check_name(name)
        b = load_bundle(bundle_dir)  # a bundle that does not load is never added
        version = version or b.version
        if not _VERSION.match(version):
            raise RegistryError(f"version {version!r}: use letters, digits, '_', '.' or '-'")
        dest = self.root / name / version
        if dest.exists():
            raise RegistryError(f"{dest}: version {version} of {name} exists already; give another --version")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{version}.tmp-{os.getpid()}"
        shutil.copytree(Path(bundle_dir).expanduser(), tmp, symlinks=False)
        meta_p = tmp / "anomon.json"
        meta = json.loads(meta_p.read_text())
        if meta.get("version") != version:
            meta["version"] = version
            meta_p.write_text(json.dumps(meta))
        os.replace(tmp, dest)
        self._log(name, version, "add", f"from {Path(bundle_dir).expanduser()}")
        if self.current(name) is None:
            self.promote(name, version, reason="first version")
        return version

    def promote(self, name: str, version: str, reason: str = "", *, _action: str = "promote") -> str | None:
        """Point ``current`` at ``version`` (it must load and score); returns the version it replaced."""
        from monitor.modelstore import ModelBundleError, load_bundle

        d = self._dir(name)
        if version not in self.versions(name):
            raise RegistryError(f"{name}: no version {version!r} (versions: {', '.join(self.versions(name)) or 'none'})")
        try:
            new = load_bundle(d / version)
        except ModelBundleError as exc:
            raise RegistryError(f"{name} {version} is not promoted: {exc}") from None
        old = self.current(name)
        if old is not None and old != version:
            try:
                cur = load_bundle(d / old)
            except ModelBundleError:
                cur = None
            if cur is not None and (cur.length, cur.channels) != (new.length, new.channels):
                raise RegistryError(f"{name} {version}: windows {new.length}x{new.channels} differ from the serving "
                                    f"{old}'s {cur.length}x{cur.channels}; a running daemon cannot swap them "
                                    "(serve it under another name)")
        tmp = d / f".{CURRENT}.tmp-{os.getpid()}"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(version, tmp)
        os.replace(tmp, d / CURRENT)  # atomic: a reader sees the old pointer or the new one
        self._log(name, version, _action, reason)
        return old

    def rollback(self, name: str, reason: str = "") -> tuple[str, str]:
        """Point ``current`` back at the version promoted before the current one; returns (from, to)."""
        cur = self.current(name)
        if cur is None:
            raise RegistryError(f"{name}: nothing is current; promote a version first")
        stack: list[str] = []  # the promotions in force: a promotion pushes, a rollback pops
        for e in self.history(name):
            if e.get("action") == "promote" and (not stack or stack[-1] != e["version"]):
                stack.append(e["version"])
            elif e.get("action") == "rollback" and len(stack) > 1:
                stack.pop()
        prev = [v for v in stack[:-1] if v != cur and v in self.versions(name)]
        if not prev:
            raise RegistryError(f"{name}: no earlier version to roll back to (current {cur})")
        to = prev[-1]
        self.promote(name, to, reason=reason, _action="rollback")  # recorded as a rollback, not a promotion
        return cur, to

    def note(self, name: str, version: str, action: str, reason: str) -> None:
        """Write an event (e.g. ``refused``: a retrained candidate that failed validation) to the history."""
        self._dir(name)
        self._log(name, version, action, reason)

    # ------------------------------------------------------------------ helpers
    def _dir(self, name: str) -> Path:
        _check_name(name)
        d = self.root / name
        if not d.is_dir():
            raise RegistryError(f"no model {name!r} in registry {self.root} (models: {', '.join(self.names()) or 'none'})")
        return d

    def _history_doc(self, name: str) -> dict:
        return {"format": HISTORY_FORMAT, "events": self.history(name)}

    def _write_history(self, name: str, h: dict) -> None:
        p = self.root / name / "history.json"
        tmp = p.with_name(f".history.json.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(h, indent=1))
        os.replace(tmp, p)

    def _log(self, name: str, version: str, action: str, reason: str) -> None:
        h = self._history_doc(name)
        h["events"].append({"version": version, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            "action": action, "reason": reason})
        self._write_history(name, h)


def _check_name(name: str) -> None:
    if not _VERSION.match(name or ""):
        raise RegistryError(f"model name {name!r}: use letters, digits, '_', '.' or '-'")
