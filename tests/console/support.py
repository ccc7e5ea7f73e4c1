"""Helpers for the console tests: operators made with the real CLI, a signed-in HTTP client with its cookies.

httpx will not send Secure cookies over plain http (the test server's loopback), so the client keeps the
console's cookies itself and sends them as a Cookie header: exactly what a browser on localhost does.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
import pyotp

from tests.api.support import Server

PASSWORD = "correct horse battery staple"


def hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, f"no hidden field {name} in the page"
    return html.unescape(found.group(1))


@dataclass
class Invite:
    tenant: str
    name: str
    link: str


def invite(server: Server, tenant: str, name: str, role: str, *, require_totp: bool = False) -> Invite:
    args = ["operator", "add", name, "--tenant", tenant, "--role", role]
    if require_totp:
        args.append("--require-totp")
    out = server.cli(*args)
    assert out["operator"]["status"] == "invited", out
    # The printed link names this server's own address; the tests reach it on the port they started.
    path = out["setup_link"].split("/", 3)[3]
    return Invite(tenant, name, f"{server.base}/{path}")


@dataclass
class Browserless:
    """A signed-out or signed-in console client over plain HTTP."""

    server: Server
    cookies: dict[str, str] = field(default_factory=dict)
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30.0, follow_redirects=False))
    last_page: str = ""
    #: The last response's raw Set-Cookie headers (the flags are what the security tests read).
    set_cookies: list[str] = field(default_factory=list)

    def _keep(self, r: httpx.Response) -> httpx.Response:
        self.set_cookies = r.headers.get_list("set-cookie")
        for raw in self.set_cookies:
            name, _, rest = raw.partition("=")
            value = rest.split(";", 1)[0].strip('"')
            if "max-age=0" in raw.lower() or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        if r.headers.get("content-type", "").startswith("text/html"):
            self.last_page = r.text
        return r

    def _headers(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}

    def get(self, path: str, **params: str) -> httpx.Response:
        # (httpx drops a query string already in the URL when params is given, even empty.)
        return self._keep(self.http.get(self.server.base + path, params=params or None, headers=self._headers()))

    def post(self, path: str, data: dict[str, Any], *, csrf: bool = True) -> httpx.Response:
        form = dict(data)
        if csrf:
            form.setdefault("csrf", hidden(self.last_page, "csrf"))
        return self._keep(self.http.post(self.server.base + path, data=form, headers=self._headers()))

    def set_up(self, inv: Invite, *, totp: bool = False) -> str | None:
        """Follow a set-up link; returns the TOTP secret when one was enrolled."""
        r = self.get(inv.link.removeprefix(self.server.base))
        assert r.status_code == 200, r.text
        secret = hidden(r.text, "totp_secret")
        data = {"token": hidden(r.text, "token"), "password": PASSWORD, "password2": PASSWORD, "totp_secret": secret}
        if totp:
            data["totp"] = pyotp.TOTP(secret).now()
        r = self.post("/setup", data)
        assert r.status_code == 200 and 'action="/login"' in r.text, r.text
        return secret if totp else None

    def sign_in(self, tenant: str, name: str, password: str = PASSWORD, totp: str = "") -> httpx.Response:
        if 'action="/login"' not in self.last_page:
            self.get("/")
        return self.post("/login", {"tenant": tenant, "name": name, "password": password, "totp": totp})

    def close(self) -> None:
        self.http.close()


def signed_in(server: Server, tenant: str, name: str, role: str) -> Browserless:
    client = Browserless(server)
    client.set_up(invite(server, tenant, name, role))
    r = client.sign_in(tenant, name)
    assert r.status_code == 303, r.text
    client.get("/")
    assert f"{name} · {role}" in client.last_page
    return client


def operator_with_password(server: Server, tenant: str, name: str, role: str = "operator") -> None:
    """An operator who finished set-up with PASSWORD (no TOTP): what `lockzero approve --as NAME` signs in as."""
    client = Browserless(server)
    try:
        client.set_up(invite(server, tenant, name, role))
    finally:
        client.close()
