"""A labeled corpus for detect_exposure, deterministic by seed.

Documents look like what people paste or CI leaks: CI logs, diffs, stack traces, .env files, YAML
(Kubernetes, compose, GitHub Actions) and JSON configs. Planted in them: credentials of every kind the
detector knows (each labeled with its kind and the 1-based line/column of its first character), and hard
negatives that must not be reported: placeholders, template variables, documented example keys, hex
digests, git SHAs, UUIDs, wrong checksums, public keys and certificates, password hashes, references to
environment variables.

Usage: ``docs = generate(seed)``; ``text, labels = concatenated(seed, target_bytes)`` for benchmarks.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field

ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Label:
    kind: str
    line: int
    column: int
    value: str


@dataclass
class Document:
    name: str
    text: str
    labels: list[Label]


@dataclass
class Plant:
    """A credential placed in the text; ``offset`` chars into ``text`` is where the label points."""

    kind: str
    text: str
    offset: int = 0
    value: str = ""


@dataclass
class Builder:
    parts: list[str] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    line: int = 1
    column: int = 1

    def _advance(self, text: str) -> None:
        newlines = text.count("\n")
        if newlines:
            self.line += newlines
            self.column = len(text) - text.rfind("\n")
        else:
            self.column += len(text)

    def add(self, *pieces: str | Plant) -> None:
        for piece in pieces:
            if isinstance(piece, Plant):
                self._advance(piece.text[: piece.offset])
                self.labels.append(Label(piece.kind, self.line, self.column, piece.value or piece.text))
                self._advance(piece.text[piece.offset :])
                self.parts.append(piece.text)
            else:
                self._advance(piece)
                self.parts.append(piece)

    def emit(self, *pieces: str | Plant) -> None:
        self.add(*pieces, "\n")

    @property
    def text(self) -> str:
        return "".join(self.parts)


# --- credential makers ------------------------------------------------------------------------------


class Maker:
    def __init__(self, rng: random.Random) -> None:
        self.r = rng

    def s(self, n: int, alphabet: str = ALNUM) -> str:
        return "".join(self.r.choice(alphabet) for _ in range(n))

    def b62_check(self, body: str) -> str:
        n = binascii.crc32(body.encode())
        out = ""
        while n:
            n, rem = divmod(n, 62)
            out = B62[rem] + out
        return out.rjust(6, "0")

    def github(self) -> str:
        body = self.s(30)
        return self.r.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]) + body + self.b62_check(body)

    def github_bad_checksum(self) -> str:
        body = self.s(30)
        good = self.b62_check(body)
        bad = good
        while bad == good:
            bad = self.s(6)
        return "ghp_" + body + bad

    def github_fine_grained(self) -> str:
        return f"github_pat_11{self.s(20, string.ascii_uppercase + string.digits)}_{self.s(59)}"

    def gitlab(self) -> str:
        return "glpat-" + self.s(20, ALNUM + "-_")

    def npm(self) -> str:
        body = self.s(30)
        return "npm_" + body + self.b62_check(body)

    def npm_bad_checksum(self) -> str:
        return "npm_" + self.s(36)

    def pypi(self) -> str:
        return "pypi-AgEIcHlwaS5vcmc" + self.s(self.r.randint(130, 180), ALNUM + "-_")

    def slack(self) -> str:
        kind = self.r.random()
        if kind < 0.5:
            return f"xoxb-{self.s(11, string.digits)}-{self.s(13, string.digits)}-{self.s(24)}"
        if kind < 0.8:
            digits = [self.s(n, string.digits) for n in (11, 12, 13)]
            return f"xoxp-{'-'.join(digits)}-{self.s(32, HEX)}"
        app = self.s(10, string.ascii_uppercase + string.digits)
        return f"xapp-1-A{app}-{self.s(13, string.digits)}-{self.s(64, HEX)}"

    def slack_webhook(self) -> str:
        up = string.ascii_uppercase + string.digits
        return f"https://hooks.slack.com/services/T{self.s(8, up)}/B{self.s(10, up)}/{self.s(24)}"

    def stripe(self) -> str:
        prefix = self.r.choice(["sk_live_", "sk_live_", "rk_live_", "sk_test_"])
        return prefix + self.s(self.r.choice([24, 99]))

    def openai(self) -> str:
        if self.r.random() < 0.7:
            return f"sk-proj-{self.s(74, ALNUM + '-_')}T3BlbkFJ{self.s(74, ALNUM + '-_')}"
        return f"sk-{self.s(20)}T3BlbkFJ{self.s(20)}"

    def anthropic(self) -> str:
        return f"sk-ant-api03-{self.s(93, ALNUM + '-_')}AA"

    def aws_id(self) -> str:
        return self.r.choice(["AKIA", "AKIA", "ASIA"]) + self.s(16, string.ascii_uppercase + "234567")

    def aws_secret(self) -> str:
        while True:
            value = self.s(40, ALNUM + "/+")
            if any(c.isdigit() for c in value) and any(c.isupper() for c in value):
                return value

    def gcp_key(self) -> str:
        return "AIza" + self.s(35, ALNUM + "-_")

    def azure_key(self) -> str:
        return self.s(86, ALNUM + "+/") + "=="

    def twilio(self) -> str:
        return self.r.choice(["SK", "SK", "AC"]) + self.s(32, HEX)

    def sendgrid(self) -> str:
        return f"SG.{self.s(22, ALNUM + '-_')}.{self.s(43, ALNUM + '-_')}"

    def hex(self, n: int) -> str:
        return self.s(n, HEX)

    def pem(self, kind: str = "RSA ") -> str:
        lines = [self.s(64, ALNUM + "+/") for _ in range(self.r.randint(8, 25))]
        lines.append(self.s(self.r.randint(10, 60), ALNUM + "+/") + "==")
        label = f"{kind}PRIVATE KEY"
        return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"

    def jwt(self) -> str:
        alg = self.r.choice(["HS256", "RS256", "ES256"])
        header = {"alg": alg, "typ": "JWT"} if self.r.random() < 0.8 else {"alg": alg, "kid": self.s(8)}
        payload = {
            "sub": self.s(10),
            "iat": self.r.randint(1_700_000_000, 1_800_000_000),
            "exp": self.r.randint(1_800_000_000, 1_900_000_000),
            "scope": self.r.choice(["read", "read write", "admin"]),
        }

        def enc(o: object) -> str:
            return base64.urlsafe_b64encode(json.dumps(o, separators=(",", ":")).encode()).rstrip(b"=").decode()

        sig = self.s(43 if alg != "RS256" else 342, ALNUM + "-_")
        return f"{enc(header)}.{enc(payload)}.{sig}"

    def password(self, n: int | None = None, symbols: str = "!#%^*-_=+.~") -> str:
        n = n or self.r.randint(14, 28)
        while True:
            value = self.s(n, ALNUM + symbols)
            if sum(c.isdigit() for c in value) >= 1 and sum(c.isupper() for c in value) >= 1:
                return value

    def uuid(self) -> str:
        h = self.hex(32)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def user(self) -> str:
        return self.r.choice(["app", "svc_billing", "deploy", "api", "reporting", "etl", "web"])

    def host(self) -> str:
        return self.r.choice(
            [
                "db.internal.example.net",
                "prod-db-1.c9akcirh.eu-west-1.rds.amazonaws.com",
                "cluster0.x7k2p.mongodb.net",
                "redis-14052.c1.us-east-1.ec2.cloud.redislabs.com",
                "mq.prod.svc.cluster.local",
                "10.2.3.4",
            ]
        )


# --- the kinds: how each is written, in which line shapes ---------------------------------------------

Gen = Callable[[Maker], list[list[str | Plant]]]


def _assign(m: Maker, names: list[str], kind: str, value: str) -> list[str | Plant]:
    name = m.r.choice(names)
    style = m.r.randrange(6)
    p = Plant(kind, value)
    if style == 0:
        return [f"{name}=", p]
    if style == 1:
        return [f"export {name}=", p]
    if style == 2:
        return [f'{name}="', p, '"']
    if style == 3:
        return [f"  {name.lower()}: ", p]
    if style == 4:
        return [f'  "{name.lower()}": "', p, '",']
    return [f"{name.lower()} = '", p, "'"]


def g_github(m: Maker) -> list[list[str | Plant]]:
    t = m.github()
    return m.r.choice(
        [
            [_assign(m, ["GITHUB_TOKEN", "GH_TOKEN", "GITHUB_PAT"], "github", t)],
            [["git clone https://x-access-token:", Plant("github", t), "@github.com/acme/payments.git"]],
            [["remote: Invalid username or token ", Plant("github", t)]],
        ]
    )


def g_github_fg(m: Maker) -> list[list[str | Plant]]:
    return [_assign(m, ["GITHUB_TOKEN", "GH_PAT", "RENOVATE_TOKEN"], "github_fine_grained", m.github_fine_grained())]


def g_gitlab(m: Maker) -> list[list[str | Plant]]:
    t = m.gitlab()
    return m.r.choice(
        [
            [_assign(m, ["GITLAB_TOKEN", "CI_JOB_TOKEN_OVERRIDE", "GL_TOKEN"], "gitlab", t)],
            [['curl --header "PRIVATE-TOKEN: ', Plant("gitlab", t), '" https://gitlab.com/api/v4/projects']],
        ]
    )


def g_npm(m: Maker) -> list[list[str | Plant]]:
    t = m.npm()
    return m.r.choice(
        [
            [["//registry.npmjs.org/:_authToken=", Plant("npm", t)]],
            [_assign(m, ["NPM_TOKEN", "NODE_AUTH_TOKEN"], "npm", t)],
        ]
    )


def g_pypi(m: Maker) -> list[list[str | Plant]]:
    t = m.pypi()
    return m.r.choice(
        [
            [["[pypi]"], ["username = __token__"], ["password = ", Plant("pypi", t)]],
            [_assign(m, ["TWINE_PASSWORD", "PYPI_API_TOKEN"], "pypi", t)],
        ]
    )


def g_slack(m: Maker) -> list[list[str | Plant]]:
    t = m.slack()
    return m.r.choice(
        [
            [_assign(m, ["SLACK_BOT_TOKEN", "SLACK_TOKEN", "SLACK_APP_TOKEN"], "slack", t)],
            [["slack_sdk.errors.SlackApiError: invalid_auth (token=", Plant("slack", t), ")"]],
        ]
    )


def g_slack_webhook(m: Maker) -> list[list[str | Plant]]:
    t = m.slack_webhook()
    return m.r.choice(
        [
            [_assign(m, ["SLACK_WEBHOOK_URL", "ALERT_WEBHOOK"], "slack_webhook", t)],
            [
                [
                    "curl -X POST -H 'Content-type: application/json' --data '{\"text\":\"deploy ok\"}' ",
                    Plant("slack_webhook", t),
                ]
            ],
        ]
    )


def g_stripe(m: Maker) -> list[list[str | Plant]]:
    t = m.stripe()
    return m.r.choice(
        [
            [_assign(m, ["STRIPE_SECRET_KEY", "STRIPE_API_KEY", "STRIPE_KEY"], "stripe", t)],
            [['stripe.api_key = "', Plant("stripe", t), '"']],
            [["curl https://api.stripe.com/v1/charges -u ", Plant("stripe", t), ":"]],
        ]
    )


def g_openai(m: Maker) -> list[list[str | Plant]]:
    t = m.openai()
    return m.r.choice(
        [
            [_assign(m, ["OPENAI_API_KEY", "OPENAI_KEY"], "openai", t)],
            [["openai.AuthenticationError: Error code: 401 - Incorrect API key provided: ", Plant("openai", t)]],
        ]
    )


def g_anthropic(m: Maker) -> list[list[str | Plant]]:
    t = m.anthropic()
    return m.r.choice(
        [
            [_assign(m, ["ANTHROPIC_API_KEY", "CLAUDE_API_KEY"], "anthropic", t)],
            [['client = anthropic.Anthropic(api_key="', Plant("anthropic", t), '")']],
        ]
    )


def g_aws(m: Maker) -> list[list[str | Plant]]:
    key_id, secret = m.aws_id(), m.aws_secret()
    return m.r.choice(
        [
            [
                ["[default]"],
                ["aws_access_key_id = ", Plant("aws", key_id)],
                ["aws_secret_access_key = ", Plant("aws", secret)],
            ],
            [
                ["AWS_ACCESS_KEY_ID=", Plant("aws", key_id)],
                ["AWS_SECRET_ACCESS_KEY=", Plant("aws", secret)],
            ],
            [
                ["User name,Password,Access key ID,Secret access key,Console login link"],
                [
                    "deploy-bot,,",
                    Plant("aws", key_id),
                    ",",
                    Plant("aws", secret),
                    ",https://123456789012.signin.aws.amazon.com/console",
                ],
            ],
            [
                ['  "AccessKeyId": "', Plant("aws", key_id), '",'],
                ['  "SecretAccessKey": "', Plant("aws", secret), '",'],
            ],
        ]
    )


def g_gcp_key(m: Maker) -> list[list[str | Plant]]:
    t = m.gcp_key()
    return m.r.choice(
        [
            [_assign(m, ["GOOGLE_API_KEY", "GCP_API_KEY", "MAPS_API_KEY"], "gcp_api_key", t)],
            [
                [
                    "GET https://maps.googleapis.com/maps/api/geocode/json?address=Berlin&key=",
                    Plant("gcp_api_key", t),
                    " 403",
                ]
            ],
        ]
    )


def g_gcp_sa(m: Maker) -> list[list[str | Plant]]:
    pem = m.pem("").replace("\n", "\\n") + "\\n"
    project = m.r.choice(["payments-prod", "acme-data", "ml-training-42"])
    return [
        ["{"],
        ['  "type": "service_account",'],
        [f'  "project_id": "{project}",'],
        [f'  "private_key_id": "{m.hex(40)}",'],
        ['  "private_key": "', Plant("gcp_service_account", pem), '",'],
        [f'  "client_email": "deployer@{project}.iam.gserviceaccount.com",'],
        [f'  "client_id": "{m.s(21, string.digits)}",'],
        ['  "token_uri": "https://oauth2.googleapis.com/token"'],
        ["}"],
    ]


def g_azure(m: Maker) -> list[list[str | Plant]]:
    key = m.azure_key()
    account = m.r.choice(["acmeprodstore", "logsarchive01", "mediaassets"])
    return [
        [
            f"AZURE_STORAGE_CONNECTION_STRING=DefaultEndpointsProtocol=https;AccountName={account};AccountKey=",
            Plant("azure", key),
            ";EndpointSuffix=core.windows.net",
        ]
    ]


def g_twilio(m: Maker) -> list[list[str | Plant]]:
    t = m.twilio()
    return [_assign(m, ["TWILIO_API_KEY", "TWILIO_SID", "TWILIO_ACCOUNT_SID"], "twilio", t)]


def g_sendgrid(m: Maker) -> list[list[str | Plant]]:
    t = m.sendgrid()
    return m.r.choice(
        [
            [_assign(m, ["SENDGRID_API_KEY", "SMTP_PASSWORD"], "sendgrid", t)],
            [["sg = SendGridAPIClient('", Plant("sendgrid", t), "')"]],
        ]
    )


def g_datadog(m: Maker) -> list[list[str | Plant]]:
    key = m.hex(m.r.choice([32, 32, 40]))
    return m.r.choice(
        [
            [["DD_API_KEY=", Plant("datadog", key)]],
            [["datadog:"], ["  apiKey: ", Plant("datadog", key)]],
            [["  - name: DD_APP_KEY"], ['    value: "', Plant("datadog", key), '"']],
            [["datadog.initialize(api_key='", Plant("datadog", key), "')"]],
        ]
    )


def g_private_key(m: Maker) -> list[list[str | Plant]]:
    pem = m.pem(m.r.choice(["RSA ", "EC ", "OPENSSH ", ""]))
    style = m.r.randrange(3)
    if style == 0:
        return [[Plant("private_key", pem)]]
    if style == 1:
        indented = pem.replace("\n", "\n    ")
        return [["  tls.key: |"], ["    ", Plant("private_key", indented)]]
    plus = pem.replace("\n", "\n+")
    return [["+", Plant("private_key", plus)]]


def g_jwt(m: Maker) -> list[list[str | Plant]]:
    t = m.jwt()
    return m.r.choice(
        [
            [["> Authorization: Bearer ", Plant("jwt", t)]],
            [['{"access_token":"', Plant("jwt", t), '","token_type":"Bearer","expires_in":3600}']],
            [["Set-Cookie: session=", Plant("jwt", t), "; Path=/; HttpOnly; Secure"]],
        ]
    )


def g_db_url(m: Maker) -> list[list[str | Plant]]:
    scheme = m.r.choice(["postgres", "postgresql", "mysql", "mongodb+srv", "redis", "amqp", "rediss", "amqps"])
    user = "" if scheme.startswith("redis") and m.r.random() < 0.5 else m.user()
    pw = m.password(symbols="-_.~")  # characters a URL carries unencoded
    url_tail = f"@{m.host()}/app"
    prefix = f"{scheme}://{user}:"
    shape = m.r.randrange(3)
    if shape == 0:
        return [["DATABASE_URL=", prefix, Plant("db_url", pw), url_tail]]
    if shape == 1:
        return [
            [
                "psycopg.OperationalError: connection failed: could not connect using ",
                prefix,
                Plant("db_url", pw),
                url_tail,
            ]
        ]
    return [['  url: "', prefix, Plant("db_url", pw), url_tail, '"']]


def g_basic(m: Maker) -> list[list[str | Plant]]:
    token = base64.b64encode(f"{m.user()}:{m.password()}".encode()).decode()
    return m.r.choice(
        [
            [["> Authorization: Basic ", Plant("basic_auth", token)]],
            [['curl -H "Authorization: Basic ', Plant("basic_auth", token), '" https://registry.internal/v2/_catalog']],
            [['    "authorization": "Basic ', Plant("basic_auth", token), '",']],
        ]
    )


def g_generic(m: Maker) -> list[list[str | Plant]]:
    pw = m.password()
    style = m.r.randrange(6)
    if style == 0:
        return [_assign(m, ["DB_PASSWORD", "POSTGRES_PASSWORD", "ADMIN_PASSWORD", "SMTP_PASSWORD"], "generic", pw)]
    if style == 1:
        return [_assign(m, ["API_KEY", "INTERNAL_API_KEY", "PARTNER_API_SECRET"], "generic", m.s(32))]
    if style == 2:
        return [
            _assign(
                m,
                ["CLIENT_SECRET", "OAUTH_CLIENT_SECRET", "JWT_SECRET", "SECRET_KEY"],
                "generic",
                m.s(40, ALNUM + "-_"),
            )
        ]
    if style == 3:
        return [["> Authorization: Bearer ", Plant("generic", m.s(48, ALNUM + "._-"))]]
    if style == 4:
        return [["    password: ", Plant("generic", pw)]]
    return [['{"username": "', m.user(), '", "password": "', Plant("generic", pw), '"}']]


KINDS: dict[str, Gen] = {
    "github": g_github,
    "github_fine_grained": g_github_fg,
    "gitlab": g_gitlab,
    "npm": g_npm,
    "pypi": g_pypi,
    "slack": g_slack,
    "slack_webhook": g_slack_webhook,
    "stripe": g_stripe,
    "openai": g_openai,
    "anthropic": g_anthropic,
    "aws": g_aws,
    "gcp_api_key": g_gcp_key,
    "gcp_service_account": g_gcp_sa,
    "azure": g_azure,
    "twilio": g_twilio,
    "sendgrid": g_sendgrid,
    "datadog": g_datadog,
    "private_key": g_private_key,
    "jwt": g_jwt,
    "db_url": g_db_url,
    "basic_auth": g_basic,
    "generic": g_generic,
}


# --- hard negatives ----------------------------------------------------------------------------------


def negatives(m: Maker) -> list[str]:
    """Lines that look like credentials and are not (one call gives a few)."""
    r = m.r
    pool: list[Callable[[], str]] = [
        lambda: f"GITHUB_TOKEN={m.github_bad_checksum()}",
        lambda: f"NPM_TOKEN={m.npm_bad_checksum()}",
        lambda: "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        lambda: "token: ${{ secrets.GITHUB_TOKEN }}",
        lambda: "  password: {{ .Values.postgresql.auth.password }}",
        lambda: 'api_key = os.environ["API_KEY"]',
        lambda: "password = os.getenv('DB_PASSWORD')",
        lambda: "const apiKey = process.env.STRIPE_SECRET_KEY;",
        lambda: "DB_PASSWORD=changeme",
        lambda: "DB_PASSWORD=${DB_PASSWORD}",
        lambda: "password: <your-password>",
        lambda: "secret: '****************'",
        lambda: "api_key: xxxxxxxxxxxxxxxxxxxxxxxx",
        lambda: 'cursor.execute("UPDATE users SET password = %s WHERE id = %s", (pw, uid))',
        lambda: "STRIPE_SECRET_KEY=sk_live_XXXXXXXXXXXXXXXXXXXXXXXX",
        lambda: "stripe.api_key = 'sk_test_4eC39HqLyjWDarjtT1zdp7dc'",
        lambda: "OPENAI_API_KEY=sk-...",
        lambda: "OPENAI_API_KEY=sk-your-key-here",
        lambda: "ANTHROPIC_API_KEY=sk-ant-api03-...",
        lambda: "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
        lambda: "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        lambda: "AWS_ACCESS_KEY_ID=AKIAI44QH8DHBEXAMPLE",
        lambda: f"Digest: sha256:{m.hex(64)}",
        lambda: f"commit {m.hex(40)}",
        lambda: f"{m.hex(32)}  dist/app-1.4.2.tar.gz",
        lambda: f"sha256sum: {m.hex(64)}",
        lambda: f'ETag: "{m.hex(32)}"',
        lambda: f"request_id={m.uuid()} status=200 duration_ms={r.randint(3, 900)}",
        lambda: f'  "trace_id": "{m.uuid()}",',
        lambda: f"Run actions/checkout@{m.hex(40)}",
        lambda: f"HEAD is now at {m.hex(7)} fix flaky test",
        lambda: f"password_hash: $2b$12${m.s(53, ALNUM + './')}",
        lambda: f'  password: "$argon2id$v=19$m=65536,t=3,p=4${m.s(22)}${m.s(43)}"',
        lambda: "DATABASE_URL=postgres://postgres:postgres@localhost:5432/app_test",
        lambda: "DATABASE_URL=postgres://app:${DB_PASSWORD}@db:5432/app",
        lambda: "REDIS_URL=redis://localhost:6379/0",
        lambda: "AMQP_URL=amqp://guest:guest@rabbitmq:5672/",
        lambda: "mongodb+srv://<username>:<password>@cluster0.mongodb.net/",
        lambda: "Authorization: Basic dXNlcjpwYXNzd29yZA==",
        lambda: "Authorization: Bearer <token>",
        lambda: "Authorization: Bearer $ACCESS_TOKEN",
        lambda: "-----BEGIN PUBLIC KEY-----",
        lambda: "-----BEGIN CERTIFICATE-----",
        lambda: "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----",
        lambda: "SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        lambda: "SLACK_BOT_TOKEN=xoxb-your-bot-token",
        lambda: (
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
            ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        ),
        lambda: f"data: eyJ{m.s(40, ALNUM)}",  # base64 that is not a JWT
        lambda: f"integrity sha512-{m.s(86, ALNUM + '+/')}==",
        lambda: f"TWILIO_ACCOUNT_SID=AC{'x' * 32}",
        lambda: "SENDGRID_API_KEY=SG.xxxxxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        lambda: "AccountKey=<storage-account-key>",
        lambda: f"datadog trace_id={r.randint(10**17, 10**18)} span_id={r.randint(10**17, 10**18)}",
        lambda: "max_tokens: 4096",
        lambda: "token_url: https://oauth2.googleapis.com/token",
        lambda: "password_min_length: 12",
        lambda: "api_key_header: X-API-Key",
        lambda: "secret: true",
        lambda: "  token: !vault |",
        lambda: "password: ''",
        lambda: "auth_token = get_token(session)",
        lambda: "self.secret_key = settings.SECRET_KEY",
        lambda: f"Successfully built {m.hex(12)}",
        lambda: f"GET /api/v1/items/{m.uuid()} 200",
        lambda: f"gcr.io/acme/app@sha256:{m.hex(64)}",
    ]
    return [r.choice(pool)() for _ in range(r.randint(2, 5))]


# --- documents ---------------------------------------------------------------------------------------


def _noise_ci(m: Maker) -> list[str]:
    r = m.r
    day = f"2026-0{r.randint(1, 9)}-{r.randint(10, 28)}"
    ts = f"{day}T{r.randint(10, 23)}:{r.randint(10, 59)}:{r.randint(10, 59)}.{r.randint(100, 999)}Z"
    return r.choice(
        [
            [f"{ts} ##[group]Run npm ci", f"{ts} added {r.randint(200, 1400)} packages in {r.randint(5, 60)}s"],
            [
                f"{ts} Step {r.randint(1, 9)}/12 : RUN pip install -r requirements.txt",
                f"{ts}  ---> Running in {m.hex(12)}",
            ],
            [f"{ts} ====== {r.randint(10, 900)} passed, {r.randint(0, 3)} skipped in {r.randint(5, 300)}.2s ======"],
            [
                f"{ts} Pushing image registry.internal/acme/api:{m.hex(7)}",
                f"{ts} latest: digest: sha256:{m.hex(64)} size: 2417",
            ],
            [f"{ts} [INFO] Building jar: /builds/acme/target/app-{r.randint(1, 9)}.{r.randint(0, 20)}.jar"],
            [
                f"{ts} warning: CRLF will be replaced by LF in src/main.ts",
                f"{ts} ok  github.com/acme/svc/internal  0.{r.randint(10, 99)}s",
            ],
        ]
    )


def _noise_code(m: Maker) -> list[str]:
    r = m.r
    return r.choice(
        [
            ["def handler(event, context):", "    body = json.loads(event['body'])", "    return {'statusCode': 200}"],
            ["import logging", "log = logging.getLogger(__name__)", ""],
            ["func (s *Server) Start(ctx context.Context) error {", "\treturn s.http.ListenAndServe()", "}"],
            ["  replicas: 3", "  selector:", "    matchLabels:", "      app: api"],
            ["LOG_LEVEL=info", f"PORT={r.randint(3000, 9000)}", "NODE_ENV=production"],
            ["    timeout_seconds: 30", "    retries: 5"],
        ]
    )


def _doc(m: Maker, kinds: list[str], name: str, with_negatives: bool = True) -> Document:
    b = Builder()
    r = m.r
    shape = r.choice(["ci", "diff", "trace", "env", "yaml", "json"])
    if shape == "diff":
        b.emit("diff --git a/config/settings.py b/config/settings.py")
        b.emit(f"index {m.hex(7)}..{m.hex(7)} 100644")
        b.emit("--- a/config/settings.py")
        b.emit("+++ b/config/settings.py")
        b.emit(f"@@ -{r.randint(1, 90)},7 +{r.randint(1, 90)},9 @@ class Settings:")
    elif shape == "trace":
        b.emit("Traceback (most recent call last):")
        b.emit('  File "/app/service/db.py", line 42, in connect')
        b.emit("    return psycopg.connect(self.dsn)")
    elif shape == "yaml":
        b.emit("apiVersion: v1")
        b.emit("kind: ConfigMap")
        b.emit("metadata:")
        b.emit(f"  name: api-config-{m.hex(5)}")
        b.emit("data:")
    elif shape == "json":
        b.emit('{"level":"info","msg":"starting","version":"1.4.2"}')
    units: list[list[list[str | Plant]]] = [KINDS[k](m) for k in kinds]
    if with_negatives:
        units += [[[neg]] for neg in negatives(m)]
    units += [[] for _ in range(r.randint(1, 3))]  # stretches of plain noise
    r.shuffle(units)
    for unit in units:
        for noise in (_noise_ci(m) if shape == "ci" else _noise_code(m))[: r.randint(0, 3)]:
            b.emit(("+" if shape == "diff" and r.random() < 0.5 else "") + noise)
        for line in unit:
            b.emit(*line)
    return Document(f"{name}-{shape}", b.text, b.labels)


def generate(seed: int, docs: int = 400, per_doc: int = 3, with_negatives: bool = True) -> list[Document]:
    """``docs`` documents; kinds are dealt round-robin so every kind gets ``docs * per_doc / len(KINDS)``.
    ``per_doc=0`` and ``with_negatives=False`` give text without anything to find (for throughput)."""
    rng = random.Random(seed)
    m = Maker(rng)
    names = list(KINDS)
    deck: list[str] = []
    out = []
    for i in range(docs):
        kinds = []
        for _ in range(per_doc):
            if not deck:
                deck = names[:]
                rng.shuffle(deck)
            kinds.append(deck.pop())
        out.append(_doc(m, kinds, f"doc{i:04d}", with_negatives))
    return out


def concatenated(
    seed: int, target_bytes: int, per_doc: int = 3, with_negatives: bool = True
) -> tuple[str, list[Label]]:
    """Documents joined into one text of about ``target_bytes``, labels shifted to their lines."""
    rng_seed = seed
    parts: list[str] = []
    labels: list[Label] = []
    size, line_offset = 0, 0
    while size < target_bytes:
        for d in generate(rng_seed, docs=200, per_doc=per_doc, with_negatives=with_negatives):
            parts.append(d.text)
            labels.extend(Label(x.kind, x.line + line_offset, x.column, x.value) for x in d.labels)
            line_offset += d.text.count("\n")
            size += len(d.text.encode())
            if size >= target_bytes:
                break
        rng_seed += 1
    return "".join(parts), labels
