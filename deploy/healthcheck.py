"""Container health check: GET a URL (default: this container's /healthz), exit 0 on 2xx, 1 otherwise.

Standard library only. Over HTTPS the certificate is not verified: the check talks to 127.0.0.1, which the
certificate does not name, and only asks whether the process answers.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request


def main() -> int:
    if len(sys.argv) > 1:
        url = sys.argv[1]
    else:
        scheme = "https" if os.environ.get("LOCKZERO_TLS_CERT") else "http"
        url = f"{scheme}://127.0.0.1:{os.environ.get('LOCKZERO_PORT', '8080')}/healthz"
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310 (fixed scheme)
            return 0 if 200 <= response.status < 300 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
