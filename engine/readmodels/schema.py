"""The engine's tables: read models (rebuilt by replay) and side tables (never in events)."""

from __future__ import annotations

from lockzero.eventstore import Migration

#: Read models: derived from events only, so `lockzero replay` can drop and rebuild them.
PROJECTION_TABLES = (
    "rm_compromised_versions",
    "rm_retired_versions",
    "rm_rotations",
    "rm_tenants",
    "rm_api_keys",
    "rm_secrets",
    "rm_secret_labels",
    "rm_dependents",
    "rm_incidents",
    "rm_audit",
    "rm_anomaly_evidence",
    "rm_removed_tokens",
    "rm_intake_tokens",
    "rm_operators",
)

_READ_MODELS = """
CREATE TABLE rm_tenants (
    tenant TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);
CREATE TABLE rm_api_keys (
    key_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    read_only INTEGER NOT NULL,
    scopes TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);
CREATE INDEX rm_api_keys_tenant ON rm_api_keys (tenant, created_at);
CREATE TABLE rm_secrets (
    tenant TEXT NOT NULL,
    secret_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    environment TEXT NOT NULL,
    labels TEXT NOT NULL,
    status TEXT NOT NULL,
    current_version INTEGER,
    latest_version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    last_rotated_at TEXT,
    max_age_s BIGINT,
    due_at TEXT,
    policy TEXT NOT NULL,
    dependents_count INTEGER NOT NULL,
    PRIMARY KEY (tenant, secret_id)
);
CREATE INDEX rm_secrets_due ON rm_secrets (tenant, due_at);
CREATE TABLE rm_secret_labels (
    tenant TEXT NOT NULL,
    secret_id TEXT NOT NULL,
    label_key TEXT NOT NULL,
    label_value TEXT NOT NULL,
    PRIMARY KEY (tenant, secret_id, label_key)
);
CREATE TABLE rm_dependents (
    tenant TEXT NOT NULL,
    dependent_id TEXT NOT NULL,
    secret_id TEXT NOT NULL,
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    delivery TEXT NOT NULL,
    target TEXT,
    token_hash TEXT UNIQUE,
    added_at TEXT NOT NULL,
    adopted_version INTEGER,
    last_seen_at TEXT,
    PRIMARY KEY (tenant, dependent_id)
);
CREATE INDEX rm_dependents_secret ON rm_dependents (tenant, secret_id);
CREATE TABLE rm_incidents (
    tenant TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    secret_id TEXT,
    status TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    summary TEXT NOT NULL,
    PRIMARY KEY (tenant, incident_id)
);
CREATE INDEX rm_incidents_open ON rm_incidents (tenant, status, opened_at);
CREATE TABLE rm_audit (
    tenant TEXT NOT NULL,
    position BIGINT NOT NULL,
    audit_id TEXT NOT NULL,
    at TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    actor_type TEXT NOT NULL,
    method TEXT NOT NULL,
    secret_id TEXT,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant, position)
);
CREATE INDEX rm_audit_secret ON rm_audit (tenant, secret_id, position);
"""

#: Side tables: ciphertext and wrapped keys. Not derivable from events, deliberately: deleting a row
#: crypto-shreds that value while the history that it existed stays.
_SIDE_TABLES = """
CREATE TABLE lz_tenant_keys (
    tenant TEXT PRIMARY KEY,
    wrapped_key {blob} NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE lz_secret_versions (
    tenant TEXT NOT NULL,
    secret_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    ciphertext {blob},
    fingerprint {blob},
    created_at TEXT NOT NULL,
    destroyed_at TEXT,
    PRIMARY KEY (tenant, secret_id, version)
);
CREATE INDEX lz_secret_versions_fp ON lz_secret_versions (tenant, fingerprint);
CREATE TABLE lz_sealed (
    tenant TEXT NOT NULL,
    ref TEXT NOT NULL,
    ciphertext {blob} NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant, ref)
);
"""


def _statements(sql: str, blob: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in sql.format(blob=blob).split(";") if s.strip())


_ROTATIONS = """
CREATE TABLE rm_rotations (
    tenant TEXT NOT NULL,
    rotation_id TEXT NOT NULL,
    secret_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT,
    from_version INTEGER,
    to_version INTEGER,
    actor_id TEXT NOT NULL,
    actor_type TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (tenant, rotation_id)
);
CREATE INDEX rm_rotations_secret ON rm_rotations (tenant, secret_id, requested_at);
CREATE INDEX rm_rotations_open ON rm_rotations (finished_at, updated_at)
"""

_RETIRED = """
CREATE TABLE rm_retired_versions (
    tenant TEXT NOT NULL,
    secret_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    restorable_until TEXT NOT NULL,
    PRIMARY KEY (tenant, secret_id, version)
);
CREATE INDEX rm_retired_versions_due ON rm_retired_versions (restorable_until)
"""

#: Telemetry, not history: when each dependent last fetched its secret (every pull updates it). Not an event
#: per read, and not a read model (replay leaves it alone).
_SEEN = """
CREATE TABLE lz_dependent_seen (
    tenant TEXT NOT NULL,
    dependent_id TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    PRIMARY KEY (tenant, dependent_id)
)
"""

ENGINE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        namespace="engine",
        version=1,
        name="read_models_and_side_tables",
        postgresql=_statements(_READ_MODELS + _SIDE_TABLES, "BYTEA"),
        sqlite=_statements(_READ_MODELS + _SIDE_TABLES, "BLOB"),
    ),
    Migration(
        namespace="engine",
        version=2,
        name="rotations",
        postgresql=_statements(_ROTATIONS, "BYTEA"),
        sqlite=_statements(_ROTATIONS, "BLOB"),
    ),
    Migration(
        namespace="engine",
        version=3,
        name="retired_versions",
        postgresql=_statements(_RETIRED, "BYTEA"),
        sqlite=_statements(_RETIRED, "BLOB"),
    ),
    Migration(
        namespace="engine",
        version=4,
        name="dependent_seen",
        postgresql=_statements(_SEEN, "BYTEA"),
        sqlite=_statements(_SEEN, "BLOB"),
    ),
    Migration(
        namespace="engine",
        version=5,
        name="incident_progress",
        # Literal SQL, not a shared constant: editing a migration must never change what new databases get.
        postgresql=("ALTER TABLE rm_incidents ADD COLUMN progress TEXT",),
        sqlite=("ALTER TABLE rm_incidents ADD COLUMN progress TEXT",),
    ),
    Migration(
        namespace="engine",
        version=6,
        name="compromised_versions",
        postgresql=(
            "CREATE TABLE rm_compromised_versions (tenant TEXT NOT NULL, secret_id TEXT NOT NULL,"
            " version INTEGER NOT NULL, incident_id TEXT, at TEXT NOT NULL, PRIMARY KEY (tenant, secret_id, version))",
        ),
        sqlite=(
            "CREATE TABLE rm_compromised_versions (tenant TEXT NOT NULL, secret_id TEXT NOT NULL,"
            " version INTEGER NOT NULL, incident_id TEXT, at TEXT NOT NULL, PRIMARY KEY (tenant, secret_id, version))",
        ),
    ),
    Migration(
        namespace="engine",
        version=7,
        name="mcp_sessions",
        # Handshake-era MCP sessions (api/mcp/sessions.py): shared by every API process, kept across
        # restarts. Telemetry-like state, not a read model: replay leaves it alone. Literal SQL (see v5).
        postgresql=(
            "CREATE TABLE lz_mcp_sessions (session_hash TEXT PRIMARY KEY, key_id TEXT NOT NULL,"
            " protocol_version TEXT NOT NULL, opened_at TEXT NOT NULL, last_seen_at TEXT NOT NULL)",
            "CREATE INDEX lz_mcp_sessions_key ON lz_mcp_sessions (key_id, last_seen_at)",
            "CREATE INDEX lz_mcp_sessions_idle ON lz_mcp_sessions (last_seen_at)",
        ),
        sqlite=(
            "CREATE TABLE lz_mcp_sessions (session_hash TEXT PRIMARY KEY, key_id TEXT NOT NULL,"
            " protocol_version TEXT NOT NULL, opened_at TEXT NOT NULL, last_seen_at TEXT NOT NULL)",
            "CREATE INDEX lz_mcp_sessions_key ON lz_mcp_sessions (key_id, last_seen_at)",
            "CREATE INDEX lz_mcp_sessions_idle ON lz_mcp_sessions (last_seen_at)",
        ),
    ),
    Migration(
        namespace="engine",
        version=8,
        name="usage_anomalies",
        # Evidence of usage anomalies, removed pull tokens (a pull with one is an anomaly) and alert intake tokens
        # are read models (replay rebuilds them); lz_pull_baseline is telemetry like lz_dependent_seen (replay
        # leaves it alone). Literal SQL (see v5).
        postgresql=(
            "CREATE TABLE rm_anomaly_evidence (tenant TEXT NOT NULL, secret_id TEXT NOT NULL,"
            " fingerprint TEXT NOT NULL, status TEXT NOT NULL, incident_id TEXT NOT NULL, signal TEXT NOT NULL,"
            " at TEXT NOT NULL, PRIMARY KEY (tenant, secret_id, fingerprint, status))",
            "CREATE INDEX rm_anomaly_evidence_incident ON rm_anomaly_evidence (tenant, incident_id)",
            "CREATE TABLE rm_removed_tokens (token_hash TEXT PRIMARY KEY, tenant TEXT NOT NULL,"
            " secret_id TEXT NOT NULL, dependent_id TEXT NOT NULL, removed_at TEXT NOT NULL)",
            "CREATE TABLE rm_intake_tokens (intake_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT NOT NULL,"
            " token_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, revoked_at TEXT)",
            "CREATE TABLE lz_pull_baseline (tenant TEXT NOT NULL, dependent_id TEXT NOT NULL,"
            " addresses TEXT NOT NULL, windows INTEGER NOT NULL, rate_ewma REAL NOT NULL,"
            " PRIMARY KEY (tenant, dependent_id))",
        ),
        sqlite=(
            "CREATE TABLE rm_anomaly_evidence (tenant TEXT NOT NULL, secret_id TEXT NOT NULL,"
            " fingerprint TEXT NOT NULL, status TEXT NOT NULL, incident_id TEXT NOT NULL, signal TEXT NOT NULL,"
            " at TEXT NOT NULL, PRIMARY KEY (tenant, secret_id, fingerprint, status))",
            "CREATE INDEX rm_anomaly_evidence_incident ON rm_anomaly_evidence (tenant, incident_id)",
            "CREATE TABLE rm_removed_tokens (token_hash TEXT PRIMARY KEY, tenant TEXT NOT NULL,"
            " secret_id TEXT NOT NULL, dependent_id TEXT NOT NULL, removed_at TEXT NOT NULL)",
            "CREATE TABLE rm_intake_tokens (intake_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT NOT NULL,"
            " token_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, revoked_at TEXT)",
            "CREATE TABLE lz_pull_baseline (tenant TEXT NOT NULL, dependent_id TEXT NOT NULL,"
            " addresses TEXT NOT NULL, windows INTEGER NOT NULL, rate_ewma REAL NOT NULL,"
            " PRIMARY KEY (tenant, dependent_id))",
        ),
    ),
    Migration(
        namespace="engine",
        version=9,
        name="console_operators",
        # Console operators (engine/security/operators.py): rm_operators is a read model (replay rebuilds it);
        # their password hashes and sealed TOTP secrets, console sessions and login failures are side tables never
        # held in events, which replay leaves alone. Literal SQL (see v5).
        postgresql=(
            "CREATE TABLE rm_operators (operator_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT NOT NULL,"
            " role TEXT NOT NULL, status TEXT NOT NULL, totp_required INTEGER NOT NULL, totp_enrolled INTEGER NOT NULL,"
            " setup_hash TEXT, setup_expires_at TEXT, created_at TEXT NOT NULL)",
            "CREATE INDEX rm_operators_name ON rm_operators (tenant, name, status)",
            "CREATE UNIQUE INDEX rm_operators_setup ON rm_operators (setup_hash)",
            "CREATE TABLE lz_operator_credentials (operator_id TEXT PRIMARY KEY, tenant TEXT NOT NULL,"
            " password_hash TEXT NOT NULL, totp_sealed TEXT, totp_last_step BIGINT NOT NULL)",
            "CREATE TABLE lz_console_sessions (session_hash TEXT PRIMARY KEY, tenant TEXT NOT NULL,"
            " operator_id TEXT NOT NULL, csrf_token TEXT NOT NULL, created_at TEXT NOT NULL,"
            " last_seen_at TEXT NOT NULL)",
            "CREATE INDEX lz_console_sessions_operator ON lz_console_sessions (operator_id)",
            "CREATE TABLE lz_login_failures (subject TEXT PRIMARY KEY, failures INTEGER NOT NULL,"
            " window_start TEXT NOT NULL, locked_until TEXT)",
        ),
        sqlite=(
            "CREATE TABLE rm_operators (operator_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT NOT NULL,"
            " role TEXT NOT NULL, status TEXT NOT NULL, totp_required INTEGER NOT NULL, totp_enrolled INTEGER NOT NULL,"
            " setup_hash TEXT, setup_expires_at TEXT, created_at TEXT NOT NULL)",
            "CREATE INDEX rm_operators_name ON rm_operators (tenant, name, status)",
            "CREATE UNIQUE INDEX rm_operators_setup ON rm_operators (setup_hash)",
            "CREATE TABLE lz_operator_credentials (operator_id TEXT PRIMARY KEY, tenant TEXT NOT NULL,"
            " password_hash TEXT NOT NULL, totp_sealed TEXT, totp_last_step BIGINT NOT NULL)",
            "CREATE TABLE lz_console_sessions (session_hash TEXT PRIMARY KEY, tenant TEXT NOT NULL,"
            " operator_id TEXT NOT NULL, csrf_token TEXT NOT NULL, created_at TEXT NOT NULL,"
            " last_seen_at TEXT NOT NULL)",
            "CREATE INDEX lz_console_sessions_operator ON lz_console_sessions (operator_id)",
            "CREATE TABLE lz_login_failures (subject TEXT PRIMARY KEY, failures INTEGER NOT NULL,"
            " window_start TEXT NOT NULL, locked_until TEXT)",
        ),
    ),
    Migration(
        namespace="engine",
        version=10,
        name="mcp_key_baselines",
        # Each MCP key's write-call baseline (addresses it called from, calls a minute): telemetry like
        # lz_pull_baseline, which replay leaves alone. Literal SQL (see v5).
        postgresql=(
            "CREATE TABLE lz_key_baseline (tenant TEXT NOT NULL, key_id TEXT NOT NULL,"
            " addresses TEXT NOT NULL, windows INTEGER NOT NULL, rate_ewma REAL NOT NULL,"
            " PRIMARY KEY (tenant, key_id))",
        ),
        sqlite=(
            "CREATE TABLE lz_key_baseline (tenant TEXT NOT NULL, key_id TEXT NOT NULL,"
            " addresses TEXT NOT NULL, windows INTEGER NOT NULL, rate_ewma REAL NOT NULL,"
            " PRIMARY KEY (tenant, key_id))",
        ),
    ),
    Migration(
        namespace="engine",
        version=11,
        name="store_keys",
        # Keys of the whole store wrapped under the master key (engine/security/master_key.py). A master key
        # rotation keeps the token-hash key here, so the token hashes stored in events keep matching. Literal SQL.
        postgresql=(
            "CREATE TABLE lz_store_keys (name TEXT PRIMARY KEY, wrapped_key BYTEA NOT NULL, created_at TEXT NOT NULL)",
        ),
        sqlite=(
            "CREATE TABLE lz_store_keys (name TEXT PRIMARY KEY, wrapped_key BLOB NOT NULL, created_at TEXT NOT NULL)",
        ),
    ),
)
