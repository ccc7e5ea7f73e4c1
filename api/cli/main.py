"""Entry point: parse, run one handler, turn every failure into one line and an exit code (0, 1 or 2).

Only the parser is imported before parsing; the handler brings its engine modules, and the error types are
looked up after a failure (an exception of a module nobody imported cannot have been raised).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from lockzero.api.cli.parser import build_parser

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _configure_logging() -> None:
    # Warnings and errors only, one line each; libraries' request logs would be noise (and carry URLs).
    logging.basicConfig(level=logging.WARNING, format="lockzero: %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "arq", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The pool logs each failed connection attempt (with driver text); we report unavailability once.
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)


def _failure(exc: BaseException) -> tuple[str, str, int] | None:
    """(message, code, exit code) for the failures the contract knows; None for a bug."""
    from lockzero.api.errors import exit_code
    from lockzero.engine.domain.errors import LockzeroError

    if isinstance(exc, LockzeroError):
        return exc.message, exc.name, exit_code(exc)
    config = sys.modules.get("lockzero.engine.config")
    if config is not None and isinstance(exc, config.ConfigError):
        return str(exc), "config_error", EXIT_FAILURE
    store = sys.modules.get("lockzero.eventstore")
    if store is not None and isinstance(exc, store.StoreUnavailable):
        return f"{exc} (check LOCKZERO_DATABASE_URL and that the database is running)", "unavailable", EXIT_FAILURE
    crypto = sys.modules.get("lockzero.engine.security.crypto")
    if (store is not None and isinstance(exc, store.EventStoreError)) or (
        crypto is not None and isinstance(exc, crypto.CryptoError)
    ):
        return str(exc), "internal_error", EXIT_FAILURE
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging()
    as_json = bool(getattr(args, "json", False))

    import asyncio

    from lockzero.api.cli.handlers import HANDLERS
    from lockzero.api.cli.output import error

    handler = HANDLERS[(args.command, getattr(args, "action", None))]
    try:
        return asyncio.run(handler(args)) or EXIT_OK
    except KeyboardInterrupt:
        # Not 130: the contract's exit codes are 0, 1 and 2. What ran is recorded; nothing else started.
        error("interrupted", code="interrupted", as_json=as_json)
        return EXIT_FAILURE
    except Exception as exc:
        known = _failure(exc)
        if known is not None:
            message, code, rc = known
            error(message, code=code, as_json=as_json)
            return rc
        if os.environ.get("LOCKZERO_DEBUG"):
            raise
        # A bug: say so in one line; LOCKZERO_DEBUG=1 shows the traceback.
        error(
            f"internal error ({type(exc).__name__}); rerun with LOCKZERO_DEBUG=1 for details",
            code="internal_error",
            as_json=as_json,
        )
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
