"""`aws_iam_access_key`: an IAM user's access keys. AWS allows two per user, so the new key lives beside the old.

create          CreateAccessKey. AWS chooses the secret: it is returned as ``value`` (the saga stores it instead
                of the value it minted) and the key id as ``username``. Idempotent under a crash: any key of the user
                other than the current one is deleted first — an orphan of a crashed attempt (its secret is lost)
                or an older retired key (the two-key limit leaves no room for it). Without a known current key
                nothing is deleted, and a user who already has two keys is refused.
authenticate    accepted: the key is Active in IAM and sts:GetCallerIdentity signed with it answers this user's ARN.
                refused: IAM no longer has the key, or STS refuses the signed call (InvalidClientTokenId,
                SignatureDoesNotMatch). A key that IAM lists as Inactive while STS still accepts it is unknown: AWS
                refuses an inactive key only once the change has propagated (seconds), and moto never does.
retire/restore  UpdateAccessKey Inactive / Active.
discard         DeleteAccessKey: compensation of create, and the scheduler's call when a retired key's grace ends.
revoke          deactivate, then delete every given key; and cut live sessions: temporary credentials obtained with
                the keys (GetSessionToken) outlive them, so an inline user policy denies every token issued until now.
observed_usage  GetAccessKeyLastUsed per key of the user.
usage_signals   a deactivated key whose GetAccessKeyLastUsed is later than the current key's activation: somebody
                still presents the retired key (AWS refuses it; moto accepts it and records the use all the same).
                AWS updates LastUsedDate with a delay (documented as up to hours), so the signal is late, not lost.

A version this provider created carries its key id as ``username``. An imported version has none: its key is
found by signing GetCallerIdentity with its secret under each of the user's key ids; an inactive imported key
(AWS refuses to sign with it) is taken to be the user's only inactive key, and restore checks that guess.

Admin credentials come from ``admin_access_key_id``/``admin_secret_access_key`` or, without them, boto3's default
chain. Errors name the operation, the user and AWS's error code — never a secret, never AWS's message text.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as AwsConnectionError

from lockzero.providers.base import Auth, Credential, ProviderError, Signal, Usage, accepted, refused, unknown
from lockzero.providers.spec import ProviderSpec

# botocore logs every response body at DEBUG, CreateAccessKey's SecretAccessKey included.
logging.getLogger("botocore.parsers").setLevel(logging.INFO)

PROPAGATION_POLLS, PROPAGATION_POLL_S = 20, 0.5
#: STS error codes that mean "this key or secret does not authenticate" (and nothing else does).
STS_REFUSALS = frozenset({"InvalidClientTokenId", "SignatureDoesNotMatch", "InvalidAccessKeyId"})
REVOKE_SESSIONS_POLICY = "lockzero-revoke-older-sessions"
_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=15)

#: botocore's model loader, shared by every provider instance. Each saga step and live check opens a provider of
#: its own, and with a loader each, every IAM or STS client re-read its service model: 50-190 ms a client; with the
#: shared one, about 10 ms for a new Session and its client. The Sessions stay one per instance, so boto3's default
#: credential chain (no admin keys configured) is still looked up per instance, as a rotated key file needs.
_LOADER = botocore.loaders.create_loader()


def _new_session() -> boto3.session.Session:
    core = botocore.session.Session()
    core.register_component("data_loader", _LOADER)
    return boto3.session.Session(botocore_session=core)


def _failure(op: str, user: str, exc: Exception) -> ProviderError:
    if isinstance(exc, ClientError):
        code = re.sub(r"[^A-Za-z0-9.]", "", str(exc.response.get("Error", {}).get("Code", "unknown")))[:64]
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        retryable = status >= 500 or status == 429 or "Throttl" in code
        return ProviderError(f"aws {op} for IAM user {user!r} failed ({code})", retryable=retryable)
    retryable = isinstance(exc, HTTPClientError | AwsConnectionError)  # network; not e.g. NoCredentialsError
    return ProviderError(f"aws {op} for IAM user {user!r} failed ({type(exc).__name__})", retryable=retryable)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class AwsIamKeyProvider:
    name = "aws_iam_access_key"
    overlapping = True

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.user_name = str(config["user_name"])
        self.region = str(config.get("region") or "us-east-1")
        self.endpoint_url = str(config["endpoint_url"]) if config.get("endpoint_url") else None
        self._admin = (config.get("admin_access_key_id"), config.get("admin_secret_access_key"))
        self._session: boto3.session.Session | None = None
        self._session_lock = threading.Lock()
        self._iam_client: Any = None
        self._user_arn: str | None = None

    def __repr__(self) -> str:
        return f"AwsIamKeyProvider(user_name={self.user_name!r})"

    # --- AWS calls, each in a worker thread ------------------------------------------------------

    def _client(self, service: str, key_id: str | None, secret: str | None) -> Any:
        # A boto3 Session is not thread-safe, and verify's two logins build clients in two worker threads at once.
        with self._session_lock:
            if self._session is None:
                self._session = _new_session()
            return self._session.client(
                service,
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                aws_access_key_id=key_id,
                aws_secret_access_key=secret,
                config=_CONFIG,
            )

    async def _iam(self, op: str, method: str, *, missing_ok: bool = False, **params: Any) -> dict[str, Any]:
        try:
            if self._iam_client is None:
                client = await asyncio.to_thread(self._client, "iam", *self._admin)
                # Two concurrent first calls (verify's two logins) may both build one: keep the first, close ours.
                if self._iam_client is None:
                    self._iam_client = client
                else:
                    client.close()
            result: dict[str, Any] = await asyncio.to_thread(getattr(self._iam_client, method), **params)
            return result
        except ClientError as exc:
            if missing_ok and _code(exc) == "NoSuchEntity":
                return {}
            raise _failure(op, self.user_name, exc) from None
        except BotoCoreError as exc:
            raise _failure(op, self.user_name, exc) from None

    async def _whoami(self, key_id: str, secret: str) -> str | None:
        """The ARN the key authenticates as, or None when AWS refuses it.

        Raises ProviderError when AWS gave no answer about the key (throttling, network, a 5xx)."""

        def call() -> str:
            client = self._client("sts", key_id, secret)
            try:
                return str(client.get_caller_identity()["Arn"])
            finally:
                client.close()

        try:
            return await asyncio.to_thread(call)
        except ClientError as exc:
            if _code(exc) in STS_REFUSALS:
                return None
            # Anything else (throttling, AccessDenied, a disabled region, ...) says nothing about the key.
            raise _failure("GetCallerIdentity", self.user_name, exc) from None
        except BotoCoreError as exc:
            raise _failure("GetCallerIdentity", self.user_name, exc) from None

    async def _arn(self) -> str:
        if self._user_arn is None:
            self._user_arn = str((await self._iam("GetUser", "get_user", UserName=self.user_name))["User"]["Arn"])
        return self._user_arn

    async def _keys(self) -> list[dict[str, Any]]:
        listing = await self._iam("ListAccessKeys", "list_access_keys", UserName=self.user_name)
        return list(listing.get("AccessKeyMetadata", []))

    async def _set_status(self, key_id: str, status: str, op: str, *, missing_ok: bool) -> None:
        await self._iam(
            op, "update_access_key", missing_ok=missing_ok, UserName=self.user_name, AccessKeyId=key_id, Status=status
        )

    async def _delete(self, key_id: str, op: str) -> None:
        await self._iam(op, "delete_access_key", missing_ok=True, UserName=self.user_name, AccessKeyId=key_id)

    async def _accepted(self, key_id: str, secret: str) -> bool:
        """Wait (bounded) until STS accepts a key just created or activated: AWS takes a few seconds to propagate."""
        for attempt in range(PROPAGATION_POLLS):
            if await self._whoami(key_id, secret) == await self._arn():
                return True
            if attempt + 1 < PROPAGATION_POLLS:
                await asyncio.sleep(PROPAGATION_POLL_S)
        return False

    # --- which key a credential is ---------------------------------------------------------------

    async def _signing_key(self, credential: Credential) -> str | None:
        """The key id the credential authenticates as (its recorded id, or found by signing with each key)."""
        ids = [credential.username] if credential.username else [k["AccessKeyId"] for k in await self._keys()]
        arn = await self._arn()
        for key_id in ids:
            if await self._whoami(key_id, credential.value) == arn:
                return key_id
        return None

    async def _key_id(self, credential: Credential) -> str | None:
        """Recorded id, else the key it signs as, else (imported and inactive) the user's only inactive key."""
        if credential.username:
            return credential.username
        found = await self._signing_key(credential)
        if found is None:
            inactive = [k["AccessKeyId"] for k in await self._keys() if k["Status"] == "Inactive"]
            found = inactive[0] if len(inactive) == 1 else None
        return found

    # --- the Provider protocol -------------------------------------------------------------------

    async def create(self, new: Credential, previous: Credential | None) -> Credential:
        current = (previous.username or await self._signing_key(previous)) if previous else None
        keys = await self._keys()
        if current is None and len(keys) >= 2:
            raise ProviderError(
                f"aws CreateAccessKey for IAM user {self.user_name!r}: the user has two keys and neither is known"
                " to be current; delete the unused one",
                retryable=False,
            )
        for key in keys:
            if current is not None and key["AccessKeyId"] != current:
                await self._delete(key["AccessKeyId"], "DeleteAccessKey (left by an earlier attempt)")
        issued = (await self._iam("CreateAccessKey", "create_access_key", UserName=self.user_name))["AccessKey"]
        key_id, secret = str(issued["AccessKeyId"]), str(issued["SecretAccessKey"])
        await self._accepted(key_id, secret)
        return Credential(secret, key_id, key_id)

    async def authenticate(self, credential: Credential) -> Auth:
        try:
            keys = {str(k["AccessKeyId"]): str(k["Status"]) for k in await self._keys()}
            arn = await self._arn()
            key_id = credential.username
            if key_id is not None and key_id not in keys:
                return refused(f"aws IAM user {self.user_name!r} has no key {key_id}")
            candidates = [key_id] if key_id else sorted(keys)
            for candidate in candidates:
                if await self._whoami(candidate, credential.value) != arn:
                    continue
                if keys.get(candidate) == "Active":
                    return accepted(f"aws key {candidate} is Active and STS accepts a call signed with it")
                return unknown(
                    f"aws key {candidate} is {keys.get(candidate)} in IAM, but STS still accepts a call signed with"
                    " it (AWS takes seconds to propagate a status change; a local AWS such as moto never enforces it)"
                )
        except ProviderError as exc:
            return unknown(f"{exc} (no answer about the key)")
        return refused(f"aws STS refuses every call signed with this secret for IAM user {self.user_name!r}")

    async def retire(self, credential: Credential) -> None:
        key_id = credential.username or await self._signing_key(credential)
        if key_id is None:
            return  # an unrecorded key that no longer authenticates: retired already
        await self._set_status(key_id, "Inactive", "UpdateAccessKey Inactive", missing_ok=True)

    async def restore(self, credential: Credential) -> None:
        key_id = await self._key_id(credential)
        if key_id is None:
            raise ProviderError(f"aws restore for IAM user {self.user_name!r}: the key is gone", retryable=False)
        await self._set_status(key_id, "Active", "UpdateAccessKey Active", missing_ok=False)  # gone: NoSuchEntity
        if not await self._accepted(key_id, credential.value) and not credential.username:
            # The guessed inactive key was another one: put it back as it was.
            await self._set_status(key_id, "Inactive", "UpdateAccessKey Inactive", missing_ok=True)
            raise ProviderError(f"aws restore for IAM user {self.user_name!r}: the key is gone", retryable=False)

    async def discard(self, credential: Credential) -> None:
        key_id = await self._key_id(credential)
        if key_id is not None:
            await self._delete(key_id, "DeleteAccessKey")

    async def revoke(self, credentials: list[Credential]) -> None:
        ids = {c.username or await self._signing_key(c) for c in credentials}
        if None in ids:
            # An unrecorded key that cannot sign is an inactive one: none of those may come back either.
            ids |= {k["AccessKeyId"] for k in await self._keys() if k["Status"] == "Inactive"}
        for key_id in sorted(i for i in ids if i):
            await self._set_status(key_id, "Inactive", "UpdateAccessKey Inactive (revoke)", missing_ok=True)
            await self._delete(key_id, "DeleteAccessKey (revoke)")
        # Long-term keys carry no aws:TokenIssueTime, so keys issued later are not affected by this policy.
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        deny = {
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"DateLessThan": {"aws:TokenIssueTime": now}},
        }
        await self._iam(
            "PutUserPolicy (revoke sessions)",
            "put_user_policy",
            UserName=self.user_name,
            PolicyName=REVOKE_SESSIONS_POLICY,
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [deny]}),
        )

    async def observed_usage(self) -> list[Usage]:
        usages = []
        for key in await self._keys():
            key_id = key["AccessKeyId"]
            last = (await self._iam("GetAccessKeyLastUsed", "get_access_key_last_used", AccessKeyId=key_id)).get(
                "AccessKeyLastUsed", {}
            )
            at = last.get("LastUsedDate")
            where = f"last used by {last.get('ServiceName')} in {last.get('Region')}" if at else "never used"
            usages.append(Usage("aws iam GetAccessKeyLastUsed", f"{key_id} ({key['Status']}): {where}", at))
        return usages

    async def usage_signals(self, retired: Sequence[str], since: datetime | None) -> list[Signal]:
        """Inactive keys used after ``since`` (``retired``, the key ids Lockzero retired, are among them; an
        imported v1's key has no recorded id, so every inactive key is looked at)."""
        if since is None:
            return []
        signals = []
        for key in await self._keys():
            if key["Status"] != "Inactive":
                continue
            key_id = key["AccessKeyId"]
            last = (await self._iam("GetAccessKeyLastUsed", "get_access_key_last_used", AccessKeyId=key_id)).get(
                "AccessKeyLastUsed", {}
            )
            at = last.get("LastUsedDate")
            if at is None or at <= since:
                continue
            where = f"{last.get('ServiceName') or 'an AWS service'} in {last.get('Region') or 'an unknown region'}"
            signals.append(
                Signal(
                    "auth_failure",
                    key_id,
                    f"deactivated access key {key_id} of IAM user {self.user_name} used at {at.isoformat()} ({where})",
                    f"iam-inactive-key:{key_id}:{at.isoformat()}",
                    at,
                )
            )
        return signals

    async def close(self) -> None:
        if self._iam_client is not None:
            self._iam_client.close()
            self._iam_client = None


SPEC = ProviderSpec(
    name="aws_iam_access_key",
    summary="An AWS IAM user's access keys. Two keys during the switch; the old one is deactivated, deleted after"
    " grace.",
    required={"user_name": "the IAM user whose access keys rotate"},
    optional={
        "region": "AWS region; default us-east-1",
        "endpoint_url": "another IAM endpoint, e.g. a moto server for tests",
        "admin_access_key_id": "the admin key id; without it boto3's default credential chain",
        "admin_secret_access_key": "the admin secret key (encrypted at rest, never shown)",
    },
    permissions="an IAM policy on the user's ARN allowing iam:CreateAccessKey, iam:UpdateAccessKey,"
    " iam:DeleteAccessKey, iam:ListAccessKeys and iam:GetAccessKeyLastUsed (observed usage)",
    factory=lambda config, _: AwsIamKeyProvider(config),
    account=lambda cfg: f"aws {cfg.get('endpoint_url') or 'aws'} user {cfg['user_name']}",
    usage_signals=True,
)
