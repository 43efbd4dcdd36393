"""Shared plumbing for detectors built on PyTorch.

:class:`TorchDetector` handles the device (CUDA when present, else CPU), seeding
and deterministic CPU execution, and saving the network's ``state_dict`` through
safetensors (never pickle). A subclass implements:

* ``_build_module(self, meta) -> torch.nn.Module``: build the network from the JSON
  ``meta`` it recorded at fit time (input sizes etc.);
* ``_module_meta(self) -> dict``: that JSON meta (default: ``self.module_meta_``);
* ``fit`` (sets ``self.module_`` and ``self.module_meta_``) and ``_score``.

Other learned arrays ending in ``_`` (scalers, centres) are saved automatically.

Examples
--------
>>> import torch
>>> pick_device("cpu").type
'cpu'
>>> g = seeded_generator(3)
>>> float(torch.rand(1, generator=g)) == float(torch.rand(1, generator=seeded_generator(3)))
True
>>> list(progress(range(3), disable=True))
[0, 1, 2]
"""
from __future__ import annotations

import contextlib
import logging
import os
import random
from typing import Any, Iterator

import numpy as np

from models.base import Detector, IncompatibleModelError

MODULE_PREFIX = "module."
log = logging.getLogger(__name__)


def pick_device(device: str | None = "auto"):
    """``"auto"`` → CUDA when available, else CPU. ``"cpu"``/``"cuda"``/``"cuda:1"`` as given."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch; deterministic algorithms on CPU."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def seeded_generator(seed: int, device: Any = "cpu"):
    """A torch Generator seeded with ``seed`` (on ``device``)."""
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (None = leave as is)."""
    import torch

    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def progress(iterable=None, **kw):
    """A tqdm progress bar on stderr, only on a terminal (piped into a file it would write ``\\r``-joined
    lines), and silenced by ``ANOMON_NO_PROGRESS=1`` and in tests."""
    import sys

    from tqdm.auto import tqdm

    asked = bool(kw.pop("disable", False))
    disable = (asked or os.environ.get("ANOMON_NO_PROGRESS", "") == "1" or "PYTEST_CURRENT_TEST" in os.environ
               or not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()))
    return tqdm(iterable, disable=disable, dynamic_ncols=True, **kw)


class TorchDetector(Detector):
    """Base class for torch detectors (see module docstring)."""

    #: hyperparameter name holding the device ("auto" by default); subclasses should accept ``device``.
    def _device(self):
        return pick_device(getattr(self, "device", "auto"))

    def _build_module(self, meta: dict[str, Any]):  # pragma: no cover - abstract
        raise NotImplementedError

    def _module_meta(self) -> dict[str, Any]:
        return dict(getattr(self, "module_meta_", {}))

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        import torch

        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {}
        for k, v in vars(self).items():
            if not k.endswith("_") or k.startswith("_") or k in ("module_", "module_meta_"):
                continue
            if isinstance(v, np.ndarray):
                arrays[k] = v
            elif isinstance(v, torch.Tensor):
                arrays[k] = v.detach().cpu().numpy()
            else:
                meta[k] = v
        for k, t in self.module_.state_dict().items():
            arrays[MODULE_PREFIX + k] = t.detach().cpu().numpy()
        meta["module_meta_"] = self._module_meta()
        return arrays, meta

    def _set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        import torch

        meta = dict(meta)
        dev = getattr(self, "device", "auto")
        if isinstance(dev, str) and dev.startswith("cuda") and not torch.cuda.is_available():
            # trained on a GPU, served where there is none: the weights are device-free (saved from
            # the CPU), so run on the CPU rather than refuse the model
            log.warning("%s was saved with device=%r, but this machine has no CUDA device: loading it on the CPU",
                        type(self).__name__, dev)
            self.device = "cpu"
        module_meta = meta.pop("module_meta_", None)
        if module_meta is None:
            raise IncompatibleModelError("saved torch detector has no module_meta_")
        self.module_meta_ = module_meta
        module = self._build_module(module_meta)
        sd = {k[len(MODULE_PREFIX):]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith(MODULE_PREFIX)}
        missing, unexpected = module.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise IncompatibleModelError(f"weights do not match the network: missing {missing}, unexpected {unexpected}")
        self.module_ = module.to(self._device()).eval()
        for k, v in meta.items():
            setattr(self, k, v)
        for k, v in arrays.items():
            if not k.startswith(MODULE_PREFIX):
                setattr(self, k, v)
