"""Detectors, their contract, and thresholds.

``models`` never imports ``monitor`` or ``streams``: it works on numpy arrays.
"""
from models.base import (
    Component,
    Detector,
    DetectorError,
    Explanation,
    IncompatibleModelError,
    NotFittedError,
    Scores,
    available_detectors,
    get_detector,
    load_detector,
    register,
)

__all__ = [
    "Component",
    "Detector",
    "DetectorError",
    "Explanation",
    "IncompatibleModelError",
    "NotFittedError",
    "Scores",
    "available_detectors",
    "get_detector",
    "load_detector",
    "register",
]
