"""Three-valued authentication (issue 10, item 1) for every provider, judged on real systems.

``Provider.authenticate`` answers ``accepted`` | ``refused`` | ``unknown``. ``refused`` needs a protocol-level
refusal of *authentication* (Redis WRONGPASS, PostgreSQL SQLSTATE 28P01/28000, MySQL/MariaDB error
1045/4151/3118, an IAM key that is gone or a signed STS call refused, a validate hook answering
``valid: false``); everything that did not show that answer (nothing listening, a timeout, a permission or
resource error, a server that answers something else) is ``unknown``. For every provider this file shows:

a. an old credential left working on purpose (a new one created beside it, the old one *not* retired) is
   ``accepted``, never ``refused``: that is what keeps ``old_credential_rejected`` from a false "passed";
b. a wrong or retired credential is ``refused``, and the reason names the protocol answer;
c. a network failure (a free port, nothing listening; a server that never answers) is ``unknown``;
d. a permission-style failure is ``unknown``;
e. no credential value (nor an admin secret) ever appears in a reason.

Systems: the machine's Redis (a throwaway ACL user), the password-checking throwaway PostgreSQL cluster
(tests/providers/conftest.py ``pg_cluster``), the machine's MariaDB, a moto server process and the local
HookService (tests/providers_ext/support.py). Every verdict is cross-checked by an independent login where
the system allows one. Where a real server never gives a particular answer (Redis 7 never answers ``AUTH``
with NOPERM), a small TCP server speaking that protocol stands for the older server or proxy that does.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import psycopg
import pymysql
import pytest

from lockzero.engine.saga.verification import rejected, valid
from lockzero.engine.security.outbound import OutboundPolicy
from lockzero.providers.aws_iam import AwsIamKeyProvider
from lockzero.providers.base import Auth, Credential, Provider
from lockzero.providers.generated import GeneratedProvider
from lockzero.providers.http_hooks import HttpHooksProvider
from lockzero.providers.mysql_user import MysqlUserProvider
from lockzero.providers.postgres_role import PostgresRoleProvider
from lockzero.providers.redis_acl import RedisAclProvider
from tests.providers.support import MYSQL_HOST, MYSQL_PORT, PgCluster, built_account, free_port, new_account
from tests.providers_ext.support import HookService, MotoServer, _policy
from tests.saga.support import REDIS_HOST, REDIS_PORT, AclUser

#: Every value this file makes up carries it: no reason may contain it (e).
CANARY = "lzcanary"
LOOPBACK = OutboundPolicy.allowing("127.0.0.1")
SIGNING = "hook-signing-secret-lzcanary-0123456789"

#: The protocol answers that a refusal's reason must name (b).
REDIS_REFUSED = re.compile(r"\bWRONGPASS\b")
PG_REFUSED = re.compile(r"\bSQLSTATE (28P01|28000)\b")
MYSQL_REFUSED = re.compile(r"\berror (1045|4151|3118)\b")


def value() -> str:
    return f"{CANARY}-{uuid.uuid4().hex}"


async def judge(provider: Provider, cred: Credential, *secrets: str) -> Auth:
    """``provider.authenticate(cred)``, checked for what every answer must be: one of the three verdicts, a
    one-line reason, and no credential in it (neither this one's value, nor the canary, nor ``secrets``)."""
    auth = await provider.authenticate(cred)
    assert auth.verdict in ("accepted", "refused", "unknown"), auth
    assert auth.reason and "\n" not in auth.reason, auth
    for secret in (cred.value, CANARY, *secrets):
        assert secret not in auth.reason, f"a credential leaked into the reason: {auth.reason!r}"
    return auth


def assert_unknown(auth: Auth, *because: str) -> None:
    """Unknown, which verification shows as "unknown" for both checks: never success, never a refusal."""
    assert auth.verdict == "unknown", auth
    assert (valid(auth), rejected(auth)) == ("unknown", "unknown")
    for word in because:
        assert word in auth.reason, auth


def assert_still_works(auth: Auth) -> None:
    """Accepted: ``old_credential_rejected`` fails (it does not pass) while the old credential still works."""
    assert auth.verdict == "accepted", auth
    assert (valid(auth), rejected(auth)) == ("passed", "failed")


def assert_refused(auth: Auth, protocol: re.Pattern[str] | str) -> None:
    assert auth.verdict == "refused", auth
    assert (valid(auth), rejected(auth)) == ("failed", "passed")
    assert re.search(protocol, auth.reason), auth


# --- servers that accept a connection and then answer something other than a verdict ----------------


@dataclass
class StubServer:
    """A TCP server on 127.0.0.1: to every request it answers ``reply`` (or nothing at all when None)."""

    reply: bytes | None
    port: int = 0
    requests: int = 0

    async def __aenter__(self) -> StubServer:
        self._writers: list[asyncio.StreamWriter] = []
        self._handlers: list[asyncio.Task[None]] = []
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        self._handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        with suppress(OSError):
            while await reader.read(65536):
                self.requests += 1
                if self.reply is not None:
                    writer.write(self.reply)
                    await writer.drain()

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for writer in self._writers:  # unblocks a client still waiting for an answer
            writer.close()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()


# --- the verdict mapping the checks are built on ---------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "as_new", "as_old"),
    [("accepted", "passed", "failed"), ("refused", "failed", "passed"), ("unknown", "unknown", "unknown")],
)
def test_only_a_refusal_passes_old_credential_rejected(verdict: str, as_new: str, as_old: str) -> None:
    auth = Auth(verdict, "r")  # type: ignore[arg-type]
    assert (valid(auth), rejected(auth)) == (as_new, as_old)


# --- redis_acl: the machine's Redis ------------------------------------------------------------------------


def redis_provider(user: AclUser, port: int = REDIS_PORT) -> RedisAclProvider:
    return RedisAclProvider({"url": f"redis://{REDIS_HOST}:{port}/0", "username": user.name})


async def test_redis_old_password_left_working_is_accepted_then_wrongpass(acl_user: AclUser) -> None:
    """The issue's user: only ``+get``, no ``+ping``. AUTH needs no command permission, so the verdict is about
    the password alone; an independent client sees the same (NOPERM on PING after a successful AUTH)."""
    acl_user.setuser("reset", "on", f">{acl_user.password}", "~*", "+get")
    provider = redis_provider(acl_user)
    try:
        v1 = Credential(acl_user.password, acl_user.name)
        v2 = await provider.create(Credential(value()), v1)
        assert sorted(acl_user.rules("commands").decode().split()) == ["+get", "-@all"]  # permissions untouched

        # (a) v1 is not retired: it still authenticates, and the provider says so.
        assert_still_works(await judge(provider, v1, v2.value))
        assert_still_works(await judge(provider, v2, v1.value))
        assert (acl_user.auth_error(v1.value) or "").startswith("NoPermissionError")  # AUTH ok, PING denied

        # (b) retired: WRONGPASS, the same answer an independent client gets.
        await provider.retire(v1)
        assert acl_user.refused(v1.value)
        assert_refused(await judge(provider, v1, v2.value), REDIS_REFUSED)
        assert_refused(await judge(provider, Credential(value(), acl_user.name)), REDIS_REFUSED)
        assert_still_works(await judge(provider, v2, v1.value))
    finally:
        await provider.close()


async def test_redis_unreachable_is_unknown(acl_user: AclUser) -> None:
    provider = redis_provider(acl_user, port=free_port())
    try:
        auth = await judge(provider, Credential(acl_user.password, acl_user.name))
        assert_unknown(auth, "ConnectionError")
        # and a wrong password is not "refused" either: nobody answered
        assert_unknown(await judge(provider, Credential(value(), acl_user.name)))
    finally:
        await provider.close()
    assert acl_user.works(acl_user.password)  # the credential itself is fine


@pytest.mark.parametrize(
    ("answer", "named"),
    [
        (b"-NOPERM User has no permissions to run the 'auth' command\r\n", "NOPERM"),
        # Redis 5 (no ACL users) answers the two-argument AUTH like this
        (b"-ERR wrong number of arguments for 'auth' command\r\n", "no answer about the password"),
        (b"-LOADING Redis is loading the dataset in memory\r\n", "BusyLoadingError"),
        (b"-ERR max number of clients reached\r\n", "no answer about the password"),
    ],
    ids=["noperm", "redis5-auth-arity", "loading", "max-clients"],
)
async def test_redis_answers_other_than_wrongpass_are_unknown(answer: bytes, named: str) -> None:
    async with StubServer(answer) as stub:
        provider = RedisAclProvider({"url": f"redis://127.0.0.1:{stub.port}/0", "username": "app"})
        try:
            auth = await judge(provider, Credential(value(), "app"))
        finally:
            await provider.close()
        assert stub.requests >= 1  # the AUTH reached it
    assert_unknown(auth, named)
    assert "WRONGPASS" not in auth.reason


# --- postgres_role: the throwaway cluster that checks SCRAM passwords ---------------------------------------


def pg_admin(cluster: PgCluster) -> psycopg.Connection[Any]:
    return psycopg.connect(cluster.admin_dsn, autocommit=True)


async def test_postgres_old_role_left_working_is_accepted_then_refused(pg_cluster: PgCluster) -> None:
    async with built_account("postgres", "alternating", pg_cluster) as (account, provider):
        v1 = account.current
        v2 = await provider.create(Credential(value(), v1.username), v1)
        assert v2.username == account.clone

        # (a) the rotation has not retired v1: it still logs in, and the provider says so.
        assert account.works(v1)
        assert_still_works(await judge(provider, v1, v2.value, pg_cluster.password))
        assert_still_works(await judge(provider, v2, v1.value, pg_cluster.password))

        # (b) retired (NOLOGIN, no password): refused at authentication.
        await provider.retire(v1)
        assert account.refused(v1)
        assert_refused(await judge(provider, v1, pg_cluster.password), PG_REFUSED)
        assert_refused(await judge(provider, Credential(value(), account.clone), pg_cluster.password), "28P01")


async def test_postgres_refusals_name_their_sqlstate(pg_cluster: PgCluster) -> None:
    async with built_account("postgres", "single", pg_cluster) as (account, provider):
        wrong = await judge(provider, Credential(value(), account.name), pg_cluster.password)
        assert_refused(wrong, r"SQLSTATE 28P01\b")
        with pg_admin(pg_cluster) as conn:
            conn.execute(f"ALTER ROLE {account.name} NOLOGIN")
        assert account.refused(account.current)
        assert_refused(await judge(provider, account.current, pg_cluster.password), r"SQLSTATE 28000\b")


async def test_postgres_connection_limit_after_authentication_is_unknown(pg_cluster: PgCluster) -> None:
    """``CONNECTION LIMIT 0``: the server checks the password, then refuses the session with SQLSTATE 53300
    (too many connections for role). That is no verdict on the password, so it is unknown, not refused; a
    wrong password under the same limit is still refused (28P01), since authentication comes first."""
    async with built_account("postgres", "single", pg_cluster) as (account, provider):
        with pg_admin(pg_cluster) as conn:
            conn.execute(f"ALTER ROLE {account.name} CONNECTION LIMIT 0")
        with pytest.raises(psycopg.OperationalError, match="too many connections for role"):
            account.connect(account.current)
        assert_unknown(await judge(provider, account.current, pg_cluster.password), "SQLSTATE 53300")
        assert_refused(await judge(provider, Credential(value(), account.name), pg_cluster.password), "28P01")


async def test_postgres_no_connect_privilege_still_authenticated(pg_cluster: PgCluster) -> None:
    """A role that may not CONNECT to the DSN's database has still authenticated (42501 comes after the
    password check): its password works, so it must read as accepted — never as refused."""
    account = new_account("postgres", "single", pg_cluster)
    db = f"lzt_db_{uuid.uuid4().hex[:8]}"
    with pg_admin(pg_cluster) as conn:
        conn.execute(f"CREATE DATABASE {db}")
        conn.execute(f"REVOKE CONNECT ON DATABASE {db} FROM PUBLIC")
    provider = PostgresRoleProvider(
        {"dsn": pg_cluster.admin_dsn.rsplit("/", 1)[0] + f"/{db}", "role": account.name, "strategy": "single"}
    )
    try:
        auth = await judge(provider, account.current, pg_cluster.password)
        assert_still_works(auth)
        assert "SQLSTATE 42501" in auth.reason
        assert_refused(await judge(provider, Credential(value(), account.name), pg_cluster.password), "28P01")
    finally:
        await provider.close()
        account.drop()
        with pg_admin(pg_cluster) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


async def test_postgres_unreachable_is_unknown() -> None:
    port = free_port()
    provider = PostgresRoleProvider({"dsn": f"postgresql://postgres@127.0.0.1:{port}/postgres", "role": "app"})
    try:
        assert_unknown(await judge(provider, Credential(value(), "app")), "server unreachable")
    finally:
        await provider.close()


# --- mysql_user: the machine's MariaDB --------------------------------------------------------------------


def mysql_admin() -> pymysql.connections.Connection[Any]:
    return pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user="root", autocommit=True)


async def test_mysql_old_account_left_working_is_accepted_then_refused() -> None:
    async with built_account("mysql", "alternating", None) as (account, provider):
        v1 = account.current
        v2 = await provider.create(Credential(value(), v1.username), v1)
        assert v2.username == account.clone

        # (a) v1 not retired: it still logs in, and the provider says so.
        assert account.works(v1)
        assert_still_works(await judge(provider, v1, v2.value))
        assert_still_works(await judge(provider, v2, v1.value))

        # (b) retired (locked, random password): refused at authentication.
        await provider.retire(v1)
        assert account.refused(v1)
        assert_refused(await judge(provider, v1), MYSQL_REFUSED)


async def test_mysql_refusals_name_their_error() -> None:
    async with built_account("mysql", "single", None) as (account, provider):
        assert_refused(await judge(provider, Credential(value(), account.name)), r"\berror 1045\b")
        with mysql_admin() as conn, conn.cursor() as cur:
            cur.execute("ALTER USER %s@'%%' ACCOUNT LOCK", (account.name,))
        assert account.refused(account.current)
        assert_refused(await judge(provider, account.current), r"\berror 4151\b")


async def test_mysql_user_connection_limit_is_unknown() -> None:
    """``MAX_USER_CONNECTIONS 1`` with one session held: MariaDB checks the password, then refuses the session
    with error 1226. No verdict on the password: unknown. A wrong password in that state is still 1045."""
    async with built_account("mysql", "single", None) as (account, provider):
        with mysql_admin() as conn, conn.cursor() as cur:
            cur.execute("ALTER USER %s@'%%' WITH MAX_USER_CONNECTIONS 1", (account.name,))
        account.hold_session(account.current)
        with pytest.raises(pymysql.err.OperationalError) as denied:
            account.connect(account.current)
        assert denied.value.args[0] == 1226
        assert_unknown(await judge(provider, account.current), "error 1226")
        assert_refused(await judge(provider, Credential(value(), account.name)), r"\berror 1045\b")


async def test_mysql_unreachable_is_unknown() -> None:
    provider = MysqlUserProvider({"dsn": f"mysql://root@127.0.0.1:{free_port()}/test", "user": "app"})
    try:
        assert_unknown(await judge(provider, Credential(value(), "app")), "error 2003")
    finally:
        await provider.close()


# --- a server that accepts the connection and never answers ------------------------------------------------


async def test_a_server_that_never_answers_is_unknown_within_the_timeout() -> None:
    """Redis, PostgreSQL and MySQL logins against a port that accepts TCP and then stays silent (a stalled
    proxy, a half-dead host): each must end, within its own timeout (5 s in each provider), as unknown."""
    async with StubServer(None) as silent:
        cred = Credential(value(), "app")
        providers: list[Provider] = [
            RedisAclProvider({"url": f"redis://127.0.0.1:{silent.port}/0", "username": "app"}),
            PostgresRoleProvider({"dsn": f"postgresql://postgres@127.0.0.1:{silent.port}/postgres", "role": "app"}),
            MysqlUserProvider({"dsn": f"mysql://root@127.0.0.1:{silent.port}/test", "user": "app"}),
        ]
        try:
            answers = await asyncio.gather(
                *(asyncio.wait_for(judge(p, cred), timeout=15) for p in providers), return_exceptions=True
            )
        finally:
            for p in providers:
                await p.close()
    hung = [p.name for p, a in zip(providers, answers, strict=True) if isinstance(a, TimeoutError)]
    assert not hung, f"no answer within 15 s from a silent server: {hung}"
    for provider, auth in zip(providers, answers, strict=True):
        assert isinstance(auth, Auth), (provider.name, auth)
        assert_unknown(auth)


# --- aws_iam_access_key: a moto server process ---------------------------------------------------------------


@pytest.fixture
async def iam_user(moto: MotoServer) -> AsyncIterator[tuple[str, Credential, AwsIamKeyProvider]]:
    """A fresh IAM user with its key in use today (recorded with its key id), and the provider for it."""
    name, key_id, secret = moto.new_user()
    provider = AwsIamKeyProvider(moto.config(name))
    yield name, Credential(secret, key_id), provider
    await provider.close()


def sts_arn(moto: MotoServer, cred: Credential) -> str:
    """Independent check: whom STS takes a call signed with ``cred`` for."""
    return str(moto.client("sts", cred.username, cred.value).get_caller_identity()["Arn"])


async def test_aws_old_key_left_active_is_accepted(
    moto: MotoServer, iam_user: tuple[str, Credential, AwsIamKeyProvider]
) -> None:
    name, v1, provider = iam_user
    v2 = await provider.create(Credential(value(), v1.username), v1)
    assert moto.keys(name) == {v1.username: "Active", v2.username: "Active"}
    assert sts_arn(moto, v1).endswith(f":user/{name}")
    for cred, other in ((v1, v2), (v2, v1)):
        auth = await judge(provider, cred, other.value, moto.admin_secret)
        assert_still_works(auth)
        assert "Active" in auth.reason
    # imported form (no recorded key id): found by signing with each key
    assert_still_works(await judge(provider, Credential(v1.value, None), v2.value, moto.admin_secret))


async def test_aws_inactive_key_is_unknown_and_deleted_key_refused(
    moto: MotoServer, iam_user: tuple[str, Credential, AwsIamKeyProvider]
) -> None:
    """What moto cannot show: moto never enforces a key's status, so STS keeps accepting a key that IAM lists
    as Inactive (AWS refuses it once the change has propagated, within seconds). With moto, a retired key
    therefore gives no refusal to see: the provider must say unknown, naming why — never refused, never
    accepted. A deleted key is gone from IAM and STS refuses calls signed with it: refused."""
    name, v1, provider = iam_user
    v2 = await provider.create(Credential(value(), v1.username), v1)
    await provider.retire(v1)
    assert moto.keys(name)[v1.username] == "Inactive"
    assert sts_arn(moto, v1).endswith(f":user/{name}")  # moto's STS still takes the inactive key
    for cred in (v1, Credential(v1.value, None)):
        auth = await judge(provider, cred, v2.value, moto.admin_secret)
        assert_unknown(auth, "Inactive", "STS still accepts", "moto")

    await provider.discard(v1)  # grace over: the key is deleted
    assert v1.username not in moto.keys(name)
    gone = await judge(provider, v1, v2.value, moto.admin_secret)
    assert_refused(gone, rf"has no key {v1.username}\b")
    assert_refused(await judge(provider, Credential(v1.value, None), moto.admin_secret), "STS refuses")
    assert_still_works(await judge(provider, v2, v1.value, moto.admin_secret))


async def test_aws_wrong_secret_is_refused_by_sts(iam_user: tuple[str, Credential, AwsIamKeyProvider]) -> None:
    _, v1, provider = iam_user
    forged = Credential(value(), v1.username)  # a real key id signed with the wrong secret
    assert_refused(await judge(provider, forged, v1.value), "STS refuses")


async def test_aws_admin_without_iam_permission_is_unknown(moto: MotoServer) -> None:
    """The admin key may ask STS who it is but may not list keys (AccessDenied): no answer about the key."""
    iam = moto.client("iam")
    weak = f"weak-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=weak)
    iam.put_user_policy(UserName=weak, PolicyName="whoami", PolicyDocument=_policy("sts:GetCallerIdentity"))
    weak_key = iam.create_access_key(UserName=weak)["AccessKey"]
    name, key_id, secret = moto.new_user()
    provider = AwsIamKeyProvider(
        moto.config(
            name, admin_access_key_id=weak_key["AccessKeyId"], admin_secret_access_key=weak_key["SecretAccessKey"]
        )
    )
    try:
        cred = Credential(secret, key_id)
        assert sts_arn(moto, cred).endswith(f":user/{name}")  # the key itself works
        auth = await judge(provider, cred, weak_key["SecretAccessKey"], moto.admin_secret)
        assert_unknown(auth, "AccessDenied", "no answer about the key")
        assert_unknown(await judge(provider, Credential(value(), key_id), weak_key["SecretAccessKey"]))
    finally:
        await provider.close()


async def test_aws_unreachable_is_unknown(moto: MotoServer) -> None:
    name, key_id, secret = moto.new_user()
    provider = AwsIamKeyProvider(moto.config(name, endpoint_url=f"http://127.0.0.1:{free_port()}"))
    try:
        auth = await judge(provider, Credential(secret, key_id), moto.admin_secret)
        assert_unknown(auth, "EndpointConnectionError")
    finally:
        await provider.close()


# --- http: the local HookService ------------------------------------------------------------------------------


@dataclass
class OddValidateService(HookService):
    """The hook service, except that validate answers ``status`` with ``answer`` (JSON) instead of a verdict."""

    validate_status: int = 200
    validate_answer: Any = None

    def _act(self, path: str, req: dict[str, Any]) -> tuple[int, Any]:
        if path == "/validate":
            return self.validate_status, self.validate_answer
        return super()._act(path, req)


#: A token in the hook URLs' path and query: it must not reach a reason either.
HOOK_TOKEN = f"{CANARY}-path-token"


def hook_config(service: HookService, **overrides: Any) -> dict[str, Any]:
    config = service.config(**overrides)
    for key in ("create_url", "validate_url", "retire_url", "revoke_url"):
        path, _, query = str(config[key]).partition("?")
        config[key] = f"{path}?t={HOOK_TOKEN}" if not query else config[key]
    return config


async def test_http_old_credential_left_active_is_accepted_then_refused() -> None:
    with HookService(SIGNING) as service:
        provider = HttpHooksProvider(hook_config(service), outbound=LOOPBACK)
        try:
            v1 = Credential(value(), "svc")
            service.seed(v1.value, "svc")
            v2 = await provider.create(Credential(value(), "svc"), v1)
            assert service.status(v1.value) == service.status(v2.value) == "active"
            assert_still_works(await judge(provider, v1, v2.value, SIGNING))
            assert_still_works(await judge(provider, v2, v1.value, SIGNING))

            await provider.retire(v1)
            assert service.status(v1.value) == "retired"
            assert_refused(await judge(provider, v1, v2.value, SIGNING), r"validate hook at \S+: not valid")
            assert_refused(await judge(provider, Credential(value(), "svc"), SIGNING), "not valid")
            assert service.bad_signatures == 0
        finally:
            await provider.close()


@pytest.mark.parametrize(
    ("status", "answer", "named"),
    [
        (500, {"valid": False}, "answered 500"),  # a failure answer is no verdict, whatever its body says
        (503, {"error": "down"}, "answered 503"),
        (403, {"valid": False}, "answered 403"),
        (200, {"valid": "false"}, "no boolean 'valid'"),
        (200, {"valid": 0}, "no boolean 'valid'"),
        (200, {"ok": True}, "no boolean 'valid'"),
        (204, None, "no boolean 'valid'"),
        (200, [False], "without a JSON object"),
    ],
    ids=["500", "503", "403", "valid-string", "valid-zero", "no-valid", "empty-204", "json-array"],
)
async def test_http_validate_answers_without_a_verdict_are_unknown(status: int, answer: Any, named: str) -> None:
    with OddValidateService(SIGNING, validate_status=status, validate_answer=answer) as service:
        provider = HttpHooksProvider(hook_config(service), outbound=LOOPBACK)
        try:
            auth = await judge(provider, Credential(value(), "svc"), SIGNING, HOOK_TOKEN)
        finally:
            await provider.close()
        assert service.calls == [("/validate", "validate")]
    assert_unknown(auth, named)


async def test_http_bad_signature_and_unreachable_are_unknown() -> None:
    with HookService(SIGNING) as service:
        cred = Credential(value(), "svc")
        service.seed(cred.value, "svc")
        # the service refuses our signature (401): a permission failure of ours, no word about the credential
        wrong_key = HttpHooksProvider(hook_config(service, signing_secret=f"{CANARY}-other"), outbound=LOOPBACK)
        try:
            assert_unknown(await judge(wrong_key, cred, SIGNING, HOOK_TOKEN), "answered 401")
        finally:
            await wrong_key.close()
        assert service.bad_signatures == 1
    nowhere = f"http://127.0.0.1:{free_port()}/validate?t={HOOK_TOKEN}"
    unreachable = HttpHooksProvider({**hook_config(service), "validate_url": nowhere}, outbound=LOOPBACK)
    try:
        assert_unknown(await judge(unreachable, cred, SIGNING, HOOK_TOKEN), "unreachable")
    finally:
        await unreachable.close()


# --- generated: Lockzero is the authority -----------------------------------------------------------------


async def test_generated_answers_from_the_live_set() -> None:
    """No external system: a value is accepted while it is live and refused once it is not. There is nothing
    to be unreachable or to deny permission, so this provider never answers unknown (c, d do not apply)."""
    v1 = Credential(value())
    provider = GeneratedProvider({}, live={v1.value})
    v2 = await provider.create(Credential(value()), v1)
    assert_still_works(await judge(provider, v1, v2.value))  # (a) not retired: still live
    assert_still_works(await judge(provider, v2, v1.value))
    await provider.retire(v1)
    assert_refused(await judge(provider, v1, v2.value), "not a live version")
    assert_refused(await judge(provider, Credential(value())), "not a live version")
    assert_refused(await judge(GeneratedProvider({}), v2), "not a live version")  # an empty live set refuses
