"""`http`: a service without a module of its own, rotated through HTTP hooks it exposes.

The contract. Every hook is ``POST`` with a JSON object body and ``Content-Type: application/json``; when
``signing_secret`` is configured the request carries ``X-Lockzero-Signature: sha256=<hex HMAC-SHA256 of the raw
body under signing_secret>``, which the service must check (in constant time) before anything else.

Body fields:
  action           "create" | "restore" | "validate" | "retire" | "discard" | "revoke"
  username         the credential's username, or null
  value_sha256     hex SHA-256 of the credential's value: how retire/discard find a credential without its value
  value            the credential itself, only to create_url ("create", "restore") and validate_url
  previous         "create" only: {"username", "value_sha256"} of the credential in use, or null
  idempotency_key  "create" only: the same when Lockzero repeats a create after a crash (it is derived from the new
                   value, which is fresh for every rotation); a service issuing its own values must answer a repeat
                   with its first answer, not a second credential
  credentials      "revoke" only: [{"username", "value_sha256"}, ...] (instead of username/value_sha256)
The other actions set a state ("retired", "active", "gone") and must simply be applied each time they arrive: a
repeat finds the state already reached. Never answer them from a cache — retire, restore, retire is a real sequence.

Hooks and answers. Any 2xx is success; 5xx, 429 and network errors are retryable, every other status is final.
  create_url    "create": make `value` work beside `previous`. Answer a JSON object or nothing; a service that issues
                its own credential answers {"value": "...", "username": "..."} (each optional: absent keeps Lockzero's).
                "restore": make `value` (a retired credential) work again; the answer must not change the value.
  validate_url  answer {"valid": true | false}: does `value` authenticate right now.
  retire_url    "retire": stop the credential working, restorably.
  revoke_url    "revoke": stop every listed credential for good; "discard": delete one credential that never
                became current, or whose grace period ended. Without revoke_url both go to retire_url.
retire, discard and revoke of a credential the service does not know must answer 2xx: the outcome holds.
No secret id is sent (a provider is not told it): put what the service needs into the hook URLs.
Errors name the action, the hook's host and the status: never a value, the signing secret, a URL path or query
(they may carry tokens) or the answer's body.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import httpx
import msgspec

from lockzero.engine.security.outbound import OutboundPolicy, OutboundRefused
from lockzero.providers.base import Auth, Credential, ProviderError, Usage, accepted, refused, unknown
from lockzero.providers.deliveries import _TLS, SIGNATURE_HEADER, signature
from lockzero.providers.spec import ProviderSpec

MAX_VALUE_CHARS = 4096


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _ref(credential: Credential) -> dict[str, Any]:
    return {"username": credential.username, "value_sha256": _sha256(credential.value)}


def _host(url: str) -> str:
    u = httpx.URL(url)
    return f"{u.scheme}://{u.host}{f':{u.port}' if u.port else ''}"


class HttpHooksProvider:
    name = "http"
    overlapping = True

    def __init__(self, config: Mapping[str, Any], *, outbound: OutboundPolicy | None = None) -> None:
        self.create_url = str(config["create_url"])
        self.validate_url = str(config["validate_url"])
        self.retire_url = str(config["retire_url"]) if config.get("retire_url") else None
        self.revoke_url = str(config["revoke_url"]) if config.get("revoke_url") else self.retire_url
        self._signing_secret = str(config["signing_secret"]) if config.get("signing_secret") else None
        self._client: httpx.AsyncClient | None = None
        self._outbound = outbound or OutboundPolicy()

    def __repr__(self) -> str:
        return f"HttpHooksProvider(host={_host(self.create_url)!r})"

    async def _post(self, url: str | None, action: str, fields: dict[str, Any]) -> dict[str, Any]:
        """POST one signed hook call; returns its JSON object answer (an empty body counts as ``{}``)."""
        if url is None:
            raise ProviderError(f"http {action}: no hook URL is configured for it", retryable=False)
        where = f"http {action} hook at {_host(url)}"
        try:
            self._outbound.check_syntax(url, where)
        except OutboundRefused as exc:
            raise ProviderError(str(exc), retryable=False) from None
        body = msgspec.json.encode({"action": action, **fields})
        headers = {"Content-Type": "application/json"}
        if self._signing_secret is not None:
            headers[SIGNATURE_HEADER] = signature(self._signing_secret, body)
        if self._client is None:
            self._client = self._outbound.client(timeout=10.0, verify=_TLS)
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except OutboundRefused as exc:
            raise ProviderError(f"{where} refused: {exc}", retryable=False) from None
        except httpx.HTTPError as exc:
            raise ProviderError(f"{where} unreachable ({type(exc).__name__})") from None
        status = response.status_code
        if not 200 <= status < 300:
            raise ProviderError(f"{where} answered {status}", retryable=status >= 500 or status == 429)
        if not response.content.strip():
            return {}
        try:
            answer = msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            answer = None
        if not isinstance(answer, dict):
            raise ProviderError(f"{where} answered {status} without a JSON object", retryable=False)
        return answer

    @staticmethod
    def _invalid(action: str, url: str, what: str) -> ProviderError:
        return ProviderError(f"http {action} hook at {_host(url)} answered {what}", retryable=False)

    async def create(self, new: Credential, previous: Credential | None) -> Credential:
        fields = {
            **_ref(new),
            "value": new.value,
            "previous": _ref(previous) if previous else None,
            "idempotency_key": _sha256(f"lockzero-create:{new.value}"),
        }
        answer = await self._post(self.create_url, "create", fields)
        value, username = answer.get("value", new.value), answer.get("username", new.username)
        if not isinstance(value, str) or not 0 < len(value) <= MAX_VALUE_CHARS:
            raise self._invalid("create", self.create_url, "an invalid value")
        if username is not None and not isinstance(username, str):
            raise self._invalid("create", self.create_url, "an invalid username")
        return Credential(value, username, None)

    async def authenticate(self, credential: Credential) -> Auth:
        # The hook contract answers {"valid": bool}: the service itself decides what "refused" means.
        try:
            answer = await self._post(self.validate_url, "validate", {**_ref(credential), "value": credential.value})
        except ProviderError as exc:
            return unknown(str(exc))
        valid = answer.get("valid")
        if not isinstance(valid, bool):
            return unknown(str(self._invalid("validate", self.validate_url, "no boolean 'valid'")))
        where = _host(self.validate_url)
        return (
            accepted(f"validate hook at {where}: valid") if valid else refused(f"validate hook at {where}: not valid")
        )

    async def retire(self, credential: Credential) -> None:
        await self._post(self.retire_url, "retire", _ref(credential))

    async def restore(self, credential: Credential) -> None:
        answer = await self._post(self.create_url, "restore", {**_ref(credential), "value": credential.value})
        if answer.get("value", credential.value) != credential.value:
            raise self._invalid("restore", self.create_url, "a different value")

    async def discard(self, credential: Credential) -> None:
        await self._post(self.revoke_url, "discard", _ref(credential))

    async def revoke(self, credentials: list[Credential]) -> None:
        await self._post(self.revoke_url, "revoke", {"credentials": [_ref(c) for c in credentials]})

    async def observed_usage(self) -> list[Usage]:
        return []  # the contract has no usage hook

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


SPEC = ProviderSpec(
    name="http",
    summary="Any service with HTTP hooks that create, validate, retire and revoke its credentials (JSON POSTs).",
    required={
        "create_url": "POST here to issue a new credential",
        "validate_url": "POST here to check that a credential works",
    },
    optional={
        "retire_url": "POST here to disable the old credential after the switch",
        "revoke_url": "POST here to make a credential stop working now",
        "signing_secret": "when set, every hook call carries X-Lockzero-Signature: sha256=<HMAC of the body>",
    },
    permissions="whatever the hooks require; each hook URL must be reachable (private or loopback hosts only when"
    " LOCKZERO_OUTBOUND_ALLOW lists them)",
    factory=lambda config, ctx: HttpHooksProvider(config, outbound=ctx.outbound),
    # The service issues its credentials; Lockzero cannot create the one in use today out of nothing.
    first_credential="imported",
    outbound_url_keys=("create_url", "validate_url", "retire_url", "revoke_url"),
)
