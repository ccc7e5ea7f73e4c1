"""Credential detection for detect_exposure: format rules (rules.py) matched in one linear-time pass
(scanner.py), managed values matched by keyed fingerprint (managed.py), and the command (exposure.py)."""

from lockzero.engine.detection.exposure import MAX_TEXT_BYTES, ExposureReport, Finding, detect_exposure

__all__ = ["MAX_TEXT_BYTES", "ExposureReport", "Finding", "detect_exposure"]
