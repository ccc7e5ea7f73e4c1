"""Domain events. Immutable, msgspec-encoded, and free of secret material by construction:
values and admin credentials live encrypted in side tables, events only say that they exist."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

ActorType = Literal["operator", "agent", "service", "system", "person"]
DeliveryKind = Literal["pull", "file", "webhook"]
SecretStatus = Literal["active", "rotating", "revoked", "archived"]
IncidentKind = Literal["leaked_credential", "overdue_rotation", "policy_violation", "usage_anomaly", "rotation_failed"]
Severity = Literal["low", "medium", "high", "critical"]


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    at: datetime


class SecretEvent(Event, frozen=True, kw_only=True):
    """An event of one secret's stream (or its adoption stream)."""

    tenant: str
    secret_id: str


class SagaEvent(SecretEvent, frozen=True, kw_only=True):
    rotation_id: str


class IncidentEvent(Event, frozen=True, kw_only=True):
    tenant: str
    incident_id: str


class EventMeta(msgspec.Struct, frozen=True, omit_defaults=True):
    """Who caused an event; stored beside the payload for audit and timelines."""

    actor_id: str
    actor_type: ActorType
    correlation_id: str | None = None


# --- tenant and keys -----------------------------------------------------------------------------


class TenantCreated(Event, frozen=True, tag="tenant.created"):
    tenant: str


class ApiKeyCreated(Event, frozen=True, tag="apikey.created"):
    tenant: str
    key_id: str
    name: str
    #: HMAC-SHA256 of the token under a key derived from the master key; the token itself is never stored.
    token_hash: str
    read_only: bool
    scopes: tuple[str, ...]
    expires_at: datetime | None = None


class ApiKeyRevoked(Event, frozen=True, tag="apikey.revoked"):
    tenant: str
    key_id: str


# --- secrets -------------------------------------------------------------------------------------


class Policy(msgspec.Struct, frozen=True, omit_defaults=True):
    """Durations in seconds; tools report days where the contract says days."""

    max_age_s: int | None = None
    required_approvals: int = 0
    allow_agent_rotation: bool = True
    auto_rotate: bool = False
    grace_s: int = 7 * 86400
    adoption_deadline_s: int = 300
    #: Notify URLs. With ``notify_sealed`` set (since URLs are sealed), the redacted form of each; older
    #: events hold the URLs themselves here.
    notify: tuple[str, ...] = ()
    #: Base64 of each notify URL sealed with the tenant's data key (same order as ``notify``).
    notify_sealed: tuple[str, ...] = ()
    #: What a usage anomaly on the secret does besides the signed notification: "rotate" starts a rotation as
    #: the system actor (approvals still apply).
    on_anomaly: Literal["notify", "rotate"] = "notify"


class SecretRegistered(SecretEvent, frozen=True, tag="secret.registered"):
    provider: str
    environment: str
    labels: dict[str, str]
    policy: Policy
    #: True when an encrypted provider config is stored (lz_sealed, ref "secret/<id>/config").
    has_config: bool
    #: How v1 was checked at registration: "validated" (the provider accepted it), "skipped" (--no-validate),
    #: "issued" (the provider or Lockzero made it). None on events from before the check existed.
    value_check: Literal["validated", "skipped", "issued"] | None = None
    #: Registered with --allow-shared although another secret manages the same provider account.
    shared_account: bool = False


class SecretVersionCreated(SecretEvent, frozen=True, tag="secret.version_created"):
    version: int
    origin: Literal["imported", "generated", "rotation", "provider"]
    username: str | None = None


class SecretVersionActivated(SecretEvent, frozen=True, tag="secret.version_activated"):
    version: int
    previous_version: int | None


class SecretLabelsChanged(SecretEvent, frozen=True, tag="secret.labels_changed"):
    labels: dict[str, str]


class SecretPolicyChanged(SecretEvent, frozen=True, tag="secret.policy_changed"):
    policy: Policy


class DependentAdded(SecretEvent, frozen=True, tag="secret.dependent_added"):
    dependent_id: str
    service: str
    environment: str
    delivery: DeliveryKind
    #: File path or webhook URL; None for pull. A webhook with ``target_sealed`` holds the redacted URL here.
    target: str | None = None
    #: Keyed hash of the lz_svc_ token (pull dependents only).
    token_hash: str | None = None
    #: Base64 of the webhook URL sealed with the tenant's data key (URLs often carry tokens).
    target_sealed: str | None = None


class DependentRemoved(SecretEvent, frozen=True, tag="secret.dependent_removed"):
    dependent_id: str


class SecretVersionRetired(SecretEvent, frozen=True, tag="secret.version_retired"):
    version: int
    #: Rollback may restore it until then; afterwards the scheduler retires it for good.
    restorable_until: datetime


class SecretVersionRestored(SecretEvent, frozen=True, tag="secret.version_restored"):
    version: int


class SecretVersionDiscarded(SecretEvent, frozen=True, tag="secret.version_discarded"):
    """A version created by a rotation that was compensated before it became current."""

    version: int


class SecretVersionExpired(SecretEvent, frozen=True, tag="secret.version_expired"):
    """A retired version's grace period ended: it can no longer be restored."""

    version: int


class SecretRevoked(SecretEvent, frozen=True, tag="secret.revoked"):
    versions: tuple[int, ...]


class SecretVersionCompromised(SecretEvent, frozen=True, tag="secret.version_compromised"):
    """The version's value was seen where it must not be (detect_exposure matched it, or an incident names it).
    A compromised version is never restored without ``force``."""

    version: int
    incident_id: str | None
    source: str


class SecretDeleted(SecretEvent, frozen=True, tag="secret.deleted"):
    """Tombstone: every value and the provider config were crypto-shredded; the history stays and the id may be
    registered again (a later SecretRegistered on the same stream starts a new life)."""

    reason: str


# --- rotation saga -------------------------------------------------------------------------------

RotationKind = Literal["rotate", "rollback", "revoke"]
SagaStep = Literal["create", "restore", "validate", "shift", "retire", "verify", "revoke", "alert"]


class RotationRequested(SagaEvent, frozen=True, tag="rotation.requested"):
    kind: RotationKind
    reason: str
    from_version: int | None
    to_version: int | None
    idempotency_key: str | None = None
    #: Distinct people who must approve before the saga starts (the secret's policy at request time).
    required_approvals: int = 0
    #: A rollback to a compromised version, asked for with ``force``.
    forced: bool = False


class RotationApproved(SagaEvent, frozen=True, tag="rotation.approved"):
    by: str


class RotationJoined(SagaEvent, frozen=True, tag="rotation.joined"):
    """A call with an idempotency key was answered with this in-flight rotation: a retry with that key must get
    this rotation again, even after it finished."""

    idempotency_key: str


class RotationApprovalsMet(SagaEvent, frozen=True, tag="rotation.approvals_met"):
    """Enough distinct people approved: the saga may start."""

    approvers: tuple[str, ...]


class SagaStepStarted(SagaEvent, frozen=True, tag="rotation.step_started"):
    """Intent, recorded before the step's side effect."""

    step: SagaStep
    compensating: bool = False


class SagaStepCompleted(SagaEvent, frozen=True, tag="rotation.step_completed"):
    step: SagaStep
    compensating: bool = False
    detail: str = ""
    #: Dependents reached by the step's deliveries (shift, alert), as a number rather than inside ``detail``.
    delivered: int | None = None


class SagaStepFailed(SagaEvent, frozen=True, tag="rotation.step_failed"):
    step: SagaStep
    compensating: bool = False
    error: str = ""


class RotationFinished(SagaEvent, frozen=True, tag="rotation.finished"):
    outcome: Literal["completed", "compensated", "failed", "cancelled"]
    #: Why a person ended it (a denied approval); empty when the saga or a revocation did.
    reason: str = ""


# --- dependents' adoption (own stream per secret: frequent, and never races the saga) ---------------


class DependentAdopted(SecretEvent, frozen=True, tag="dependent.adopted"):
    dependent_id: str
    version: int
    via: DeliveryKind


class DeliveryFailed(SecretEvent, frozen=True, tag="dependent.delivery_failed"):
    dependent_id: str
    version: int
    error: str


class NotificationSent(SecretEvent, frozen=True, tag="notification.sent"):
    #: Redacted (engine.outbound.redact_url); older events may hold the full URL.
    url: str
    topic: str
    status: int


class NotificationFailed(SecretEvent, frozen=True, tag="notification.failed"):
    #: Redacted (engine.outbound.redact_url); older events may hold the full URL.
    url: str
    topic: str
    error: str


# --- incidents -----------------------------------------------------------------------------------


class IncidentOpened(IncidentEvent, frozen=True, tag="incident.opened"):
    kind: IncidentKind
    severity: Severity
    secret_id: str | None
    summary: str


class IncidentLinked(IncidentEvent, frozen=True, tag="incident.linked"):
    ref_kind: str
    ref_id: str


class IncidentAcknowledged(IncidentEvent, frozen=True, tag="incident.acknowledged"):
    by: str


class IncidentResolved(IncidentEvent, frozen=True, tag="incident.resolved"):
    resolution: str


class IncidentMitigated(IncidentEvent, frozen=True, tag="incident.mitigated"):
    """Partly remediated, not resolved: e.g. rotated away from the leaked value with a dependent still behind."""

    progress: str


class UsageAnomalyObserved(IncidentEvent, frozen=True, tag="incident.anomaly_observed"):
    """Evidence joined to a usage_anomaly incident: a provider signal, a pull, or an alert from outside.
    Never a credential: principals are user/role names, addresses are client addresses, text is redacted."""

    secret_id: str
    #: Stable identity of this piece of evidence (with ``status``): the same signal seen again joins nothing new.
    fingerprint: str
    #: "retired_session" | "auth_failure" | "removed_token" | "new_source" | "pull_rate" | "alert"
    signal: str
    source: str
    detail: str
    #: The version the evidence is about, where Lockzero can tell.
    version: int | None = None
    #: "observed" for Lockzero's own signals; "firing" / "resolved" for alerts.
    status: str = "observed"


# --- alert intake tokens --------------------------------------------------------------------------


class IntakeTokenCreated(Event, frozen=True, tag="intake.created"):
    tenant: str
    intake_id: str
    name: str
    #: Keyed hash of the lz_int_ token; the token itself is never stored.
    token_hash: str


class IntakeTokenRevoked(Event, frozen=True, tag="intake.revoked"):
    tenant: str
    intake_id: str


# --- console operators (engine/security/operators.py) -----------------------------------------------------

OperatorRole = Literal["viewer", "operator", "admin"]


class OperatorAdded(Event, frozen=True, tag="operator.added"):
    tenant: str
    operator_id: str
    name: str
    role: OperatorRole
    totp_required: bool
    #: Keyed hash of the one-time set-up token; the token itself is never stored.
    setup_hash: str
    setup_expires_at: datetime


class OperatorActivated(Event, frozen=True, tag="operator.activated"):
    """Set-up done: the password hash (and TOTP secret) went to lz_operator_credentials, never into an event."""

    tenant: str
    operator_id: str
    totp_enrolled: bool


class OperatorTotpRequired(Event, frozen=True, tag="operator.totp_required"):
    tenant: str
    operator_id: str


class OperatorRemoved(Event, frozen=True, tag="operator.removed"):
    tenant: str
    operator_id: str


# --- audit ---------------------------------------------------------------------------------------


class AuditRecorded(Event, frozen=True, tag="audit.recorded"):
    tenant: str
    audit_id: str
    actor_id: str
    actor_type: ActorType
    method: str
    outcome: Literal["ok", "denied", "error", "invalid"]
    secret_id: str | None = None
    detail: str = ""
    duration_ms: float = 0.0


AnyEvent = (
    TenantCreated
    | ApiKeyCreated
    | ApiKeyRevoked
    | SecretRegistered
    | SecretVersionCreated
    | SecretVersionActivated
    | SecretLabelsChanged
    | SecretPolicyChanged
    | DependentAdded
    | DependentRemoved
    | IncidentOpened
    | IncidentLinked
    | IncidentAcknowledged
    | IncidentResolved
    | IncidentMitigated
    | UsageAnomalyObserved
    | IntakeTokenCreated
    | IntakeTokenRevoked
    | OperatorAdded
    | OperatorActivated
    | OperatorTotpRequired
    | OperatorRemoved
    | SecretVersionCompromised
    | SecretDeleted
    | AuditRecorded
    | SecretVersionRetired
    | SecretVersionRestored
    | SecretVersionDiscarded
    | SecretRevoked
    | SecretVersionExpired
    | NotificationSent
    | NotificationFailed
    | RotationRequested
    | RotationApproved
    | RotationJoined
    | RotationApprovalsMet
    | SagaStepStarted
    | SagaStepCompleted
    | SagaStepFailed
    | RotationFinished
    | DependentAdopted
    | DeliveryFailed
)

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)
_meta_decoder = msgspec.json.Decoder(EventMeta)


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def decode(data: bytes) -> AnyEvent:
    event: AnyEvent = _decoder.decode(data)
    return event


def encode_meta(meta: EventMeta) -> bytes:
    return _encoder.encode(meta)


def decode_meta(data: bytes) -> EventMeta:
    return _meta_decoder.decode(data)


def type_name(event: Event) -> str:
    return str(type(event).__struct_config__.tag)
