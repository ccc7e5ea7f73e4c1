"""Identifier rules and stream names, in one place so every front end validates alike."""

from __future__ import annotations

import re

from lockzero.engine.domain.errors import InvalidInput

_SECRET_ID = re.compile(r"[A-Za-z0-9/_.:-]{1,256}")
_TENANT = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_ENVIRONMENT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_LABEL_KEY = re.compile(r"[A-Za-z0-9_./-]{1,63}")
_SERVICE = re.compile(r"[A-Za-z0-9_.:/-]{1,128}")


def _check(pattern: re.Pattern[str], value: str, what: str, rule: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidInput(f"{what} must be {rule}")
    return value


def secret_id(value: str) -> str:
    return _check(_SECRET_ID, value, "secret_id", "1-256 characters of [A-Za-z0-9/_.:-]")


def tenant_name(value: str) -> str:
    return _check(_TENANT, value, "tenant name", "1-63 characters of [a-z0-9_-], starting with a letter or digit")


def environment(value: str) -> str:
    return _check(_ENVIRONMENT, value, "environment", "1-64 characters of [A-Za-z0-9_.-]")


def service_name(value: str) -> str:
    return _check(_SERVICE, value, "service", "1-128 characters of [A-Za-z0-9_.:/-]")


def label(key: str, value: str) -> tuple[str, str]:
    _check(_LABEL_KEY, key, "label key", "1-63 characters of [A-Za-z0-9_./-]")
    if len(value) > 256 or any(ord(c) < 32 for c in value):
        raise InvalidInput("label value must be at most 256 printable characters")
    return key, value


def tenant_stream(tenant: str) -> str:
    return f"tenant-{tenant}"


def api_key_stream(tenant: str, key_id: str) -> str:
    return f"apikey-{tenant}/{key_id}"


def secret_stream(tenant: str, secret: str) -> str:
    return f"secret-{tenant}/{secret}"


def incident_stream(tenant: str, incident_id: str) -> str:
    return f"incident-{tenant}/{incident_id}"


def audit_stream(tenant: str) -> str:
    return f"audit-{tenant}"


def version_arn(tenant: str, secret: str, version: int) -> str:
    return f"arn:lockzero:secrets:{tenant}:secret:{secret}:v{version}"


def adoption_stream(tenant: str, secret: str) -> str:
    """Dependents' adoption records, apart from the secret stream so they never race the saga."""
    return f"adoption-{tenant}/{secret}"
