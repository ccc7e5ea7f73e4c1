"""Provider rotation benchmark: what one rotation costs with each provider, on the same engine.

Run with ``make bench`` (or ``pytest -q -s -m bench tests/bench/test_provider_bench.py``). In ONE run, per
provider: a fresh embedded engine (SQLite in a temp dir, system clock), one tenant, one secret registered through
engine.secrets.register_secret with no dependents, then WARMUP_ROTATIONS untimed rotations and ROTATIONS timed
ones, in sequence. t0 just before engine.rotations.rotate() (with a queue that only records the id), t1 when
``RotationSaga(engine).run`` returns "completed" (asserted) for that rotation: no queue, no worker, no HTTP, no
polling — the saga's own cost with that provider.

Rows (each against a real system, created for this run and removed at the end):
  generated          no external system: the BASELINE, run first and again last (drift of the machine)
  redis_acl          a Redis ACL user (tests/saga/support.py AclUser) on 127.0.0.1:6379
  postgres_role x2   alternating and single, a role in a throwaway SCRAM-password cluster (tests/providers/support.py)
  mysql_user x2      alternating and single, a MariaDB user on 127.0.0.1:3306 (tests/providers/support.py)
  aws_iam_access_key an IAM user on a moto server process (tests/providers_ext/support.py MotoServer)
  http               the in-process hook service (tests/providers_ext/support.py HookService), signed hooks

A second table splits the median rotation into its saga steps, read from the saga's own events
(SagaStepStarted.at -> SagaStepCompleted.at: the intent append plus the provider work) and the rest (rotate()'s
request, the appends between steps (each outcome rides with the next intent), RotationFinished).

The test prints the tables and asserts correctness only (every rotation completed, the last credential works and
the first is refused, checked independently of the provider where there is a real system), never a speed threshold.
It drops every user/role it created, stops the PostgreSQL cluster and the moto server, and shuts the hook service.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lockzero.engine.commands.rotations import rotate
from lockzero.engine.commands.secrets import register_secret
from lockzero.engine.domain import events as ev
from lockzero.engine.saga.provider_access import credential
from lockzero.engine.saga.rotation import RotationSaga
from lockzero.engine.security.outbound import OutboundPolicy
from lockzero.providers.base import Credential
from tests.bench.saga_support import median, percentile
from tests.engine.support import OPERATOR, RecordingQueue, folded_secret, migrated_engine
from tests.providers.support import PgCluster, new_account
from tests.providers_ext.support import HookService, MotoServer
from tests.saga.support import AclUser

pytestmark = pytest.mark.bench

ROTATIONS = 20  # timed, in sequence, per provider
WARMUP_ROTATIONS = 1  # untimed, per provider, before the timed ones (first connections, lazy imports)
TENANT = "bench"
STEPS: tuple[ev.SagaStep, ...] = ("create", "validate", "shift", "retire", "verify")
CORES = os.cpu_count() or 1

#: Called once after the rotations with (v1, last version): raises unless the last works and v1 is refused.
Check = Callable[[Credential, Credential], None]


@dataclass(frozen=True)
class Case:
    provider: str
    strategy: str
    config: dict[str, Any]
    value: bytes | None  # None: the provider issues the first value (generated)
    check: Check | None  # None: Lockzero itself is the authority (generated)
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.provider


@dataclass
class Result:
    case: Case
    ms: list[float]
    warmup_ms: list[float]
    step_ms: dict[str, list[float]]  # per step (and "other"): one value per timed rotation

    @property
    def p50(self) -> float:
        return median(self.ms)


# --------------------------------------------------------------------------------------------------
# One provider: a fresh engine, one secret, WARMUP_ROTATIONS + ROTATIONS rotations in sequence.


async def bench_provider(workdir: Path, case: Case) -> Result:
    db = workdir / f"{case.name.replace(' ', '-')}-{case.strategy}.db"
    # The hook service listens on loopback: allowed here as LOCKZERO_OUTBOUND_ALLOW=127.0.0.1 would.
    async with migrated_engine(f"sqlite:///{db}", TENANT, outbound=OutboundPolicy.allowing("127.0.0.1")) as engine:
        secret_id = f"prod/{case.provider}/{case.strategy}"
        summary = await register_secret(
            engine, TENANT, OPERATOR, secret_id=secret_id, provider=case.provider, environment="prod",
            config=case.config, value=case.value,
        )  # fmt: skip
        assert summary.current_version == "v1", summary
        queue, saga = RecordingQueue(), RotationSaga(engine)
        samples: list[tuple[str, float]] = []
        for i in range(WARMUP_ROTATIONS + ROTATIONS):
            t0 = time.perf_counter()
            started = await rotate(engine, queue, TENANT, secret_id, OPERATOR, f"provider bench {i}")
            outcome = await saga.run(TENANT, secret_id, started.rotation_id)
            t1 = time.perf_counter()
            assert outcome == "completed", (case.name, case.strategy, i, outcome, started)
            assert queue.enqueued[-1] == started.rotation_id
            samples.append((started.rotation_id, (t1 - t0) * 1000))

        # ---- correctness -------------------------------------------------------------------------
        total = WARMUP_ROTATIONS + ROTATIONS
        secret = await folded_secret(engine, secret_id, TENANT)
        assert len(secret.rotations) == total and all(r.outcome == "completed" for r in secret.rotations)
        assert secret.current_version == 1 + total, secret.current_version
        assert [v.status for v in secret.versions] == ["retired"] * total + ["current"]
        first = await credential(engine, secret, 1)
        last = await credential(engine, secret, 1 + total)
        assert first is not None and last is not None
        if case.check is not None:
            await asyncio.to_thread(case.check, first, last)

        step_ms: dict[str, list[float]] = {s: [] for s in (*STEPS, "other")}
        for rotation_id, ms in samples[WARMUP_ROTATIONS:]:
            rotation = secret.rotation(rotation_id)
            assert rotation is not None
            spent = 0.0
            for step in STEPS:
                record = rotation.last(step)
                assert record is not None and record.finished_at is not None, (rotation_id, step)
                step_ms[step].append((record.finished_at - record.started_at).total_seconds() * 1000)
                spent += step_ms[step][-1]
            step_ms["other"].append(ms - spent)
    return Result(case, [ms for _, ms in samples[WARMUP_ROTATIONS:]], [ms for _, ms in samples[:WARMUP_ROTATIONS]],
                  step_ms)  # fmt: skip


# --------------------------------------------------------------------------------------------------
# The real systems, one context per row; each removes what it created.


def generated_case(label: str) -> Case:
    return Case("generated", "-", {}, None, None, label)


@contextmanager
def redis_case() -> Iterator[Case]:
    user = AclUser.create()
    try:

        def check(first: Credential, last: Credential) -> None:
            assert user.works(last.value), "the last Redis password does not authenticate"
            assert user.refused(first.value), "the first Redis password still authenticates"
            assert len(user.passwords()) == 1, "old passwords left on the ACL user"

        yield Case("redis_acl", "-", json.loads(user.config()), user.password.encode(), check)
    finally:
        user.delete()


@contextmanager
def account_case(kind: str, strategy: str, cluster: PgCluster | None) -> Iterator[Case]:
    account = new_account(kind, strategy, cluster)
    try:

        def check(first: Credential, last: Credential) -> None:
            assert account.works(last), account.login_error(last)
            assert account.refused(first), f"the first {kind} password still logs in"

        yield Case(account.provider_name, strategy, account.config(), account.password.encode(), check)
    finally:
        account.drop()


@contextmanager
def aws_case(moto: MotoServer) -> Iterator[Case]:
    user, first_key, secret = moto.new_user()  # lives in the moto process, which the caller stops

    def check(first: Credential, last: Credential) -> None:
        keys = moto.keys(user)
        assert first_key not in keys, keys
        assert last.username is not None and keys.get(last.username) == "Active", keys
        assert list(keys.values()).count("Active") == 1, keys
        arn = moto.client("sts", last.username, last.value).get_caller_identity()["Arn"]
        assert arn.endswith(f":user/{user}"), arn

    yield Case("aws_iam_access_key", "-", moto.config(user), secret.encode(), check)


@contextmanager
def http_case() -> Iterator[Case]:
    with HookService("provider-bench-signing-secret") as service:
        service.seed("value-in-use-before-the-bench", "svc-bench")

        def check(first: Credential, last: Credential) -> None:
            assert service.status(last.value) == "active", service.status(last.value)
            assert service.status(first.value) == "retired", service.status(first.value)
            assert service.bad_signatures == 0

        yield Case("http", "-", service.config(), b"value-in-use-before-the-bench", check)


# --------------------------------------------------------------------------------------------------


async def test_provider_bench(tmp_path: Path) -> None:
    t_start = time.perf_counter()
    results: list[Result] = []
    with ExitStack() as stack:
        results.append(await bench_provider(tmp_path, generated_case("generated (baseline)")))

        with redis_case() as case:
            results.append(await bench_provider(tmp_path, case))

        cluster = PgCluster()
        stack.callback(cluster.stop)
        await asyncio.to_thread(cluster.start)
        for strategy in ("alternating", "single"):
            with account_case("postgres", strategy, cluster) as case:
                results.append(await bench_provider(tmp_path, case))
        stack.pop_all().close()  # stop the cluster now, not at the end

        for strategy in ("alternating", "single"):
            with account_case("mysql", strategy, None) as case:
                results.append(await bench_provider(tmp_path, case))

        moto = await asyncio.to_thread(MotoServer.start)
        stack.callback(moto.stop)
        with aws_case(moto) as case:
            results.append(await bench_provider(tmp_path, case))
        stack.pop_all().close()

        with http_case() as case:
            results.append(await bench_provider(tmp_path, case))

        results.append(await bench_provider(tmp_path, generated_case("generated (baseline, again)")))
    report(results, time.perf_counter() - t_start)


def report(results: list[Result], runtime_s: float) -> None:
    first, again = results[0], results[-1]
    base = (first.p50 + again.p50) / 2
    growth = statistics.linear_regression(range(len(first.ms)), first.ms).slope
    hr = "-" * 112
    lines = [
        "",
        hr,
        "Lockzero provider rotation benchmark (one run)",
        hr,
        f"per provider: fresh SQLite engine, 1 secret, no dependents; {WARMUP_ROTATIONS} warm-up + {ROTATIONS} timed"
        " rotations in sequence",
        "t0 = before rotate(), t1 = RotationSaga.run returned 'completed' (no queue, no worker, no HTTP API)",
        f"p50 = median, p90 = nearest rank (18th of {ROTATIONS}); '+ vs baseline' = p50 minus the generated p50"
        f" ({base:.1f} ms, mean of its 2 runs)",
        hr,
        f"{'provider':<28} | {'strategy':<11} | {'p50 ms':>7} | {'p90 ms':>7} | {'max ms':>7} | {'min ms':>7}"
        f" | {'+ vs baseline':>13} | {'warm-up ms':>10}",
        hr,
    ]
    for r in results:
        extra = "(baseline)" if r.case.provider == "generated" else f"{r.p50 - base:+.1f}"
        warm = ", ".join(f"{w:.1f}" for w in r.warmup_ms)
        lines.append(
            f"{r.case.name:<28} | {r.case.strategy:<11} | {r.p50:>7.1f} | {percentile(r.ms, 90):>7.1f}"
            f" | {max(r.ms):>7.1f} | {min(r.ms):>7.1f} | {extra:>13} | {warm:>10}"
        )
    lines += [
        hr,
        "mean ms per saga step (SagaStepStarted.at -> SagaStepCompleted.at: intent append + provider work; validate"
        " and verify: provider work, their intent goes with their outcome); other = rotate()",
        "request + appends between steps (outcome with next intent) + RotationFinished; the means add up to the mean"
        " rotation",
        hr,
        f"{'provider':<28} | {'strategy':<11} | "
        + " | ".join(f"{s:>8}" for s in (*STEPS, "other"))
        + f" | {'mean':>7}",
        hr,
    ]
    for r in results:
        means = [statistics.fmean(r.step_ms[s]) for s in (*STEPS, "other")]
        lines.append(
            f"{r.case.name:<28} | {r.case.strategy:<11} | "
            + " | ".join(f"{m:>8.1f}" for m in means)
            + f" | {statistics.fmean(r.ms):>7.1f}"
        )
    lines += [
        hr,
        "history: a rotation costs more the longer the secret's stream (the saga reloads and folds it at every step):",
        f"   baseline {growth:+.2f} ms per earlier rotation. Every row starts a fresh secret and runs the same"
        f" {WARMUP_ROTATIONS + ROTATIONS} rotations, so rows compare like for like.",
        "every rotation completed; last credential works, first refused (independent login/API checks where there is"
        " a real system)",
        f"{CORES} cores (shared machine: compare the two baseline rows for drift); whole run {runtime_s:.1f}s",
        hr,
    ]
    print("\n".join(lines))
