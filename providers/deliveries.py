"""How a new version reaches a dependent that does not pull: a signed webhook or an atomic file write."""

from __future__ import annotations

import hashlib
import hmac
import os
import ssl
import tempfile
from pathlib import Path

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from lockzero.engine.security.outbound import OutboundPolicy, OutboundRefused, redact_url

SIGNATURE_HEADER = "X-Lockzero-Signature"

# Building an SSL context costs tens of milliseconds of CPU; every delivery shares this one.
_TLS = ssl.create_default_context()


class DeliveryError(Exception):
    """Delivery failed; the message names the target and the status, never the payload."""


def signature(signing_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(signing_secret.encode(), body, hashlib.sha256).hexdigest()


async def post_webhook(
    url: str,
    signing_secret: str,
    body: bytes,
    *,
    outbound: OutboundPolicy,
    attempts: int = 3,
    timeout: float = 5.0,
) -> int:
    """POST the body signed with HMAC-SHA256; a 2xx answer means adopted. Retries transient failures.

    Errors name the redacted URL (host, no path or query: they may carry tokens)."""
    where = f"webhook {redact_url(url)}"
    try:
        outbound.check_syntax(url, where)
    except OutboundRefused as exc:
        raise DeliveryError(str(exc)) from None
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature(signing_secret, body)}

    class _Retryable(Exception):
        pass

    try:
        async with outbound.client(timeout=timeout, verify=_TLS) as client:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(attempts),
                wait=wait_exponential(multiplier=0.1, max=2),
                retry=retry_if_exception_type(_Retryable),
                reraise=True,
            ):
                with attempt:
                    try:
                        response = await client.post(url, content=body, headers=headers)
                    except OutboundRefused as exc:
                        raise DeliveryError(f"{where} refused: {exc}") from None
                    except httpx.HTTPError as exc:
                        raise _Retryable(f"{where} unreachable ({type(exc).__name__})") from None
                    if response.status_code >= 500 or response.status_code == 429:
                        raise _Retryable(f"{where} answered {response.status_code}")
                    if not 200 <= response.status_code < 300:
                        raise DeliveryError(f"{where} answered {response.status_code}")
                    return response.status_code
    except _Retryable as exc:
        raise DeliveryError(str(exc)) from None
    raise DeliveryError(f"{where} was not attempted")  # unreachable: the loop returns or raises


def write_file(path: str, content: bytes) -> None:
    """Write atomically (temp file in the same directory, fsync, rename) with mode 0600."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DeliveryError(f"cannot write {path} ({exc.strerror})") from None
