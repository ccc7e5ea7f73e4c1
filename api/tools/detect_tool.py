"""detect_exposure: scan text for credentials (known formats and the tenant's managed values).

Offered to read-only keys too: scanning changes no credential. The incidents it may open are records
of a leak, the point of scanning, not a change to a secret; a watcher that may only read should still
be able to raise the alarm. The key's scope limits which managed secrets it can match (and so learn of).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from lockzero.api.tools.registry import Annotations, CallContext, Tool
from lockzero.engine.detection import MAX_TEXT_BYTES, ExposureReport, detect_exposure


class DetectArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    text: Annotated[
        str,
        msgspec.Meta(
            description=f"The text to scan (log, diff, config, chat message…), at most {MAX_TEXT_BYTES} bytes"
            " of UTF-8. It is not stored."
        ),
    ]
    source: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=512,
                description="Where the text came from (file path, URL, CI job), recorded on incidents",
            ),
        ]
        | None
    ) = None


async def detect_exposure_tool(ctx: CallContext, a: DetectArgs) -> ExposureReport:
    report = await detect_exposure(
        ctx.engine, ctx.key.tenant, ctx.actor, a.text, source=a.source, visible=ctx.key.in_scope
    )
    managed = sorted({f.secret_id for f in report.findings if f.secret_id is not None})
    if managed:
        ctx.secret_id = managed[0]
    # Ids and counts only: never a value, a redacted form or the caller's text.
    detectors = sorted({f.detector for f in report.findings})
    ctx.detail = (
        f"scanned {report.scanned_bytes} bytes: {len(report.findings)} findings"
        f" ({len(managed)} managed secrets{': ' + ', '.join(managed[:5]) if managed else ''})"
        f"{'; detectors ' + ', '.join(detectors[:8]) if detectors else ''}"
        f"{'; incidents ' + ', '.join(report.incident_ids[:5]) if report.incident_ids else ''}"
    )
    return report


DETECT_TOOLS = [
    Tool(
        "detect_exposure",
        "Detect exposed credentials",
        "Scan text (a log, diff, stack trace, config file, ticket or chat message; up to 5 MiB) for credentials: "
        "known formats (GitHub, GitLab, npm, PyPI, Slack, Stripe, OpenAI, Anthropic, AWS, GCP, Azure, Twilio, "
        "SendGrid, Datadog, private keys, JWTs, database URLs with passwords, Basic/Bearer auth, password= "
        "assignments) and any value of a secret Lockzero manages, also base64-, URL- or JSON-encoded. Each "
        "finding gives line and column (1-based), a redacted form (never the value), confidence and "
        "recommended_action: rotate (a managed secret leaked: call rotate_secret with its secret_id), "
        "register_and_rotate (a credential Lockzero does not manage: have it registered, then rotated), or "
        "investigate (low confidence, or an already retired/revoked version). A managed leak opens or joins a "
        "leaked_credential incident (incident_ids). Pass source to record where the text came from. "
        "The text is not stored. Split larger texts into parts.",
        DetectArgs,
        ExposureReport,
        Annotations(read_only=False, destructive=False, idempotent=False, open_world=False),
        detect_exposure_tool,
    ),
]
