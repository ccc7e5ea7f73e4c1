"""Entry point: parse, run one handler, turn every failure into one line and an exit code."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from lockzero.api.cli.handlers import HANDLERS
from lockzero.api.cli.output import error
from lockzero.api.cli.parser import build_parser
from lockzero.api.errors import EXIT_FAILURE, EXIT_OK, exit_code
from lockzero.engine.config import ConfigError
from lockzero.engine.domain.errors import LockzeroError
from lockzero.engine.security.crypto import CryptoError
from lockzero.eventstore import EventStoreError, StoreUnavailable


def _configure_logging() -> None:
    # Warnings and errors only, one line each; libraries' request logs would be noise (and carry URLs).
    logging.basicConfig(level=logging.WARNING, format="lockzero: %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "arq", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The pool logs each failed connection attempt (with driver text); we report unavailability once.
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging()
    as_json = bool(getattr(args, "json", False))
    handler = HANDLERS[(args.command, getattr(args, "action", None))]
    try:
        return asyncio.run(handler(args)) or EXIT_OK
    except LockzeroError as exc:
        error(exc.message, code=exc.name, as_json=as_json)
        return exit_code(exc)
    except ConfigError as exc:
        error(str(exc), code="config_error", as_json=as_json)
        return EXIT_FAILURE
    except StoreUnavailable as exc:
        error(
            f"{exc} (check LOCKZERO_DATABASE_URL and that the database is running)", code="unavailable", as_json=as_json
        )
        return EXIT_FAILURE
    except (EventStoreError, CryptoError) as exc:
        error(str(exc), code="internal_error", as_json=as_json)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: say so in one line; LOCKZERO_DEBUG=1 shows the traceback
        if os.environ.get("LOCKZERO_DEBUG"):
            raise
        error(
            f"internal error ({type(exc).__name__}); rerun with LOCKZERO_DEBUG=1 for details",
            code="internal_error",
            as_json=as_json,
        )
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
