"""A labeled corpus for the credential families tests/detection/corpus.py does not cover, deterministic by seed.

Written from the formats' public documentation, not from the rules:
- ``ci_log``: multi-line secrets in CI logs whose every line carries the runner's timestamp. GitHub Actions
  log lines start with an RFC 3339 UTC time with 7 fractional digits (``2024-05-01T12:00:00.1234567Z ``,
  as in downloaded run logs); GitLab job logs with timestamps add a stream tag (``…123456Z 00O ``, ``00O+``
  on continued lines); Jenkins' timestamper plugin brackets the time (``[2024-05-01T12:00:00.123Z] ``).
  GitHub masks registered secrets line by line with ``***``, which must stay quiet.
- ``base64``: Kubernetes Secret manifests (``data:`` values are base64 of the value; types Opaque,
  kubernetes.io/tls, kubernetes.io/basic-auth, kubernetes.io/dockerconfigjson), ``kubectl get secret -o json``
  output, and ``echo … | base64 -d`` in scripts. The label points at the first character of the encoded
  value, with the kind of what it decodes to.
- ``basic_auth``: RFC 7617 (``Authorization: Basic base64(user-id ":" password)``), the same header in curl
  -v output, nginx ``proxy_set_header``, ``auth-header=Basic …`` settings, and ~/.docker/config.json
  ``"auth"`` entries (base64 of ``user:password``, per the docker login documentation).
- ``db_url``: SQLAlchemy URLs ``dialect+driver://user:password@host/db`` (postgresql+psycopg2,
  postgresql+asyncpg, mysql+pymysql, mysql+mysqldb, oracle+oracledb, mssql+pyodbc), ``mongodb+srv://``,
  and JDBC URLs from the drivers' docs (PostgreSQL ``?user=…&password=…``, MySQL Connector/J
  ``user:password@host``, SQL Server ``;user=…;password=…``, Oracle thin ``user/password@``). The label
  points at the password, as for every DB URL.
- ``named``: secrets under names that say what they are: ``ENCRYPTION_KEY=<64 hex>`` (and signing/master/
  HMAC keys), ``os.environ["DB_PASSWORD"] = "…"``, ``os.environ.setdefault(…)``, ``docker login -p …`` /
  ``--password …``. The label points at the value.

Hard negatives, in every family's documents: hex digests, ``sha256:`` digests, git SHAs, UUIDs (also under
names like BUILD_ID), placeholders (``<password>``, ``changeme``, ``${DB_PASSWORD}``, ``xxxx``, ``***``),
tokens with a wrong checksum, the RFC's own example, Basic values without a colon, and base64 of things
that are not secrets (a PNG header, plain words, a certificate, a config file).
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass

from tests.detection.corpus import ALNUM, Builder, Document, Label, Maker, Plant

FAMILIES = ("ci_log", "base64", "basic_auth", "db_url", "named")

#: One line of a document: text, and credentials planted at known positions.
Line = list[str | Plant]


@dataclass
class FamilyDocument:
    family: str
    document: Document


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- timestamps of CI runners -----------------------------------------------------------------------


class Clock:
    """Timestamps in one of the runners' formats, increasing through a log."""

    def __init__(self, m: Maker) -> None:
        self.m = m
        self.style = m.r.choice(["github", "gitlab", "jenkins"])
        self.t = m.r.randint(0, 80_000)
        self.day = f"2024-0{m.r.randint(1, 9)}-{m.r.randint(10, 28)}"

    def __call__(self, continued: bool = False) -> str:
        self.t += self.m.r.randint(0, 3)
        h, rest = divmod(self.t % 86_400, 3600)
        mi, s = divmod(rest, 60)
        base = f"{self.day}T{h:02d}:{mi:02d}:{s:02d}"
        if self.style == "github":
            return f"{base}.{self.m.s(7, string.digits)}Z "
        if self.style == "gitlab":
            return f"{base}.{self.m.s(6, string.digits)}Z 01O{'+' if continued else ''} "
        return f"[{base}.{self.m.s(3, string.digits)}Z] "


def _pem_body(m: Maker, label: str, lines: int | None = None) -> list[str]:
    body = [m.s(64, ALNUM + "+/") for _ in range(lines or m.r.randint(8, 25))]
    body.append(m.s(m.r.randint(10, 60), ALNUM + "+/") + "==")
    return [f"-----BEGIN {label}-----", *body, f"-----END {label}-----"]


def ci_log(m: Maker) -> tuple[list[Line], list[str]]:
    """Positives: a private key printed into a log (cat of a deploy key, a debug dump of an env var)."""
    clock = Clock(m)
    label = m.r.choice(["RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "PRIVATE KEY"])
    pem = _pem_body(m, label)
    lead = m.r.choice(["Run cat ~/.ssh/deploy_key", '$ echo "$SSH_KEY"', "Run printenv DEPLOY_KEY", "+ cat key.pem"])
    indent = m.r.choice(["", "", "  "])
    first = clock()
    rest = "\n".join(clock(continued=True) + indent + line for line in pem[1:])
    lines: list[Line] = [[clock(), lead], [first + indent, Plant("private_key", f"{pem[0]}\n{rest}")]]
    return lines, ci_negatives(m, clock)


def ci_negatives(m: Maker, clock: Clock) -> list[str]:
    cert = _pem_body(m, "CERTIFICATE")
    public = _pem_body(m, "PUBLIC KEY", 6)
    masked = ["-----BEGIN RSA PRIVATE KEY-----", *["***"] * 12, "-----END RSA PRIVATE KEY-----"]
    elided = ["-----BEGIN OPENSSH PRIVATE KEY-----", "b3BlbnNzaC1rZXktdjEAAAAA...", "-----END OPENSSH PRIVATE KEY-----"]
    pool: list[Callable[[], list[str]]] = [
        lambda: cert,
        lambda: public,
        lambda: masked,
        lambda: elided,
        lambda: [f"latest: digest: sha256:{m.hex(64)} size: 2417"],
        lambda: [f"HEAD is now at {m.hex(40)}"],
        lambda: [f"Run actions/checkout@{m.hex(40)}"],
        lambda: [f"request_id={m.uuid()}"],
        lambda: ["SSH_PRIVATE_KEY: ***"],
        lambda: [f"cache key: {b64('node-modules-linux-x64-' + m.hex(16))}"],
        lambda: [f"{m.hex(40)} refs/heads/main"],
    ]
    out = []
    for _ in range(m.r.randint(2, 4)):
        out.append("\n".join(clock() + line for line in m.r.choice(pool)()))
    return out


# --- base64 in Kubernetes Secrets and scripts -------------------------------------------------------


def _sa_json(m: Maker) -> str:
    project = m.r.choice(["payments-prod", "acme-data", "ml-training-42"])
    key = "\n".join(_pem_body(m, "PRIVATE KEY")) + "\n"
    return json.dumps(
        {
            "type": "service_account",
            "project_id": project,
            "private_key_id": m.hex(40),
            "private_key": key,
            "client_email": f"deployer@{project}.iam.gserviceaccount.com",
            "client_id": m.s(21, string.digits),
            "token_uri": "https://oauth2.googleapis.com/token",
        },
        indent=2,
    )


def _encoded_value(m: Maker) -> tuple[str, str, str]:
    """(Secret data key, kind of the decoded value, decoded value)."""
    choice = m.r.randrange(8)
    pw = m.password(symbols="-_.~")
    if choice == 0:
        scheme = m.r.choice(["postgresql", "postgres", "mysql", "mongodb+srv", "postgresql+asyncpg"])
        return "DATABASE_URL", "db_url", f"{scheme}://{m.user()}:{pw}@{m.host()}/app"
    if choice == 1:
        return (
            "credentials",
            "aws",
            f"[default]\naws_access_key_id = {m.aws_id()}\naws_secret_access_key = {m.aws_secret()}\n",
        )
    if choice == 2:
        return "tls.key", "private_key", "\n".join(_pem_body(m, m.r.choice(["RSA PRIVATE KEY", "PRIVATE KEY"]))) + "\n"
    if choice == 3:
        return "key.json", "gcp_service_account", _sa_json(m)
    if choice == 4:
        return m.r.choice(["GITHUB_TOKEN", "token", "gh-token"]), "github", m.github()
    if choice == 5:
        return m.r.choice(["password", "db-password", "POSTGRES_PASSWORD"]), "generic", m.password()
    if choice == 6:
        auth = b64(f"{m.user()}:{m.password()}")
        cfg = {"auths": {"registry.internal:5000": {"auth": auth}}}
        return ".dockerconfigjson", "basic_auth", json.dumps(cfg)
    return "AWS_ACCESS_KEY_ID", "aws", m.aws_id()


def base64_family(m: Maker) -> tuple[list[Line], list[str]]:
    key, kind, value = _encoded_value(m)
    encoded = b64(value + ("\n" if m.r.random() < 0.3 else ""))  # `echo` without -n adds a newline
    shape = m.r.randrange(4)
    if shape == 0:
        secret_type = {
            "tls.key": "kubernetes.io/tls",
            ".dockerconfigjson": "kubernetes.io/dockerconfigjson",
        }.get(key, "Opaque")
        lines: list[Line] = [
            ["apiVersion: v1"],
            ["kind: Secret"],
            ["metadata:"],
            [f"  name: app-{m.hex(5)}"],
            [f"type: {secret_type}"],
            ["data:"],
            [f"  {key}: ", Plant(kind, encoded)],
        ]
    elif shape == 1:
        lines = [
            ["{"],
            ['    "apiVersion": "v1",'],
            ['    "data": {'],
            [f'        "{key}": "', Plant(kind, encoded), '"'],
            ["    },"],
            ['    "kind": "Secret",'],
            ["}"],
        ]
    elif shape == 2:
        # GNU coreutils: base64 -d / --decode; the target as CI scripts write it.
        flag = m.r.choice(["-d", "--decode", "-d -i"])
        target = m.r.choice([f"/tmp/{key}", f'"$RUNNER_TEMP/{key}"', f"./secrets/{key}", key])
        lines = [["echo '", Plant(kind, encoded), f"' | base64 {flag} > {target}"]]
    else:
        lines = [
            ["data:"],
            [f"  {key}: ", Plant(kind, encoded)],
            [f"  ca.crt: {b64(chr(10).join(_pem_body(m, 'CERTIFICATE', 4)))}"],
        ]
    return lines, base64_negatives(m)


#: Start of a 1x1 PNG, the kind of binary that sits base64-encoded in manifests and data URIs.
_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def base64_negatives(m: Maker) -> list[str]:
    pool: list[Callable[[], str]] = [
        lambda: f"  username: {b64('admin')}",
        lambda: f"  password: {b64('changeme')}",
        lambda: f"  password: {b64('password')}",
        lambda: f"  DB_PASSWORD: {b64('${DB_PASSWORD}')}",
        lambda: f"  password: {b64('<password>')}",
        lambda: f"  DATABASE_URL: {b64('postgres://app:${DB_PASSWORD}@db:5432/app')}",
        lambda: f"  DATABASE_URL: {b64('postgres://postgres:postgres@localhost:5432/app')}",
        lambda: f"  AWS_ACCESS_KEY_ID: {b64('AKIAIOSFODNN7EXAMPLE')}",
        lambda: f"  GITHUB_TOKEN: {b64(m.github_bad_checksum())}",
        lambda: f"  logo.png: {_PNG}",
        lambda: f"  config.yaml: {b64('log_level: info' + chr(10) + 'port: 8080' + chr(10) + 'replicas: 3')}",
        lambda: f"  greeting: {b64('hello world, this is not a secret at all')}",
        lambda: f"  ca.crt: {b64(chr(10).join(_pem_body(m, 'CERTIFICATE', 6)))}",
        lambda: f"  checksum: {m.hex(64)}",
        lambda: f"  build: {m.uuid()}",
        lambda: f'  "sha": "{m.hex(40)}",',
        lambda: f"  token: {b64('xxxxxxxxxxxxxxxxxxxxxxxx')}",
        lambda: f"  random.bin: {base64.b64encode(bytes(m.r.randrange(256) for _ in range(48))).decode()}",
        # Decoded into a file (GNU coreutils base64 -d/--decode): a name that says nothing, or a placeholder.
        lambda: f"echo '{b64(m.password())}' | base64 -d > /tmp/build-{m.hex(6)}.txt",
        lambda: f"echo '{b64('log_level: info')}' | base64 --decode > config.yaml",
        lambda: f"echo '{b64('changeme')}' | base64 -d > /run/secrets/DB_PASSWORD",
        lambda: f"echo '{b64('${API_TOKEN}')}' | base64 -d > /tmp/API_TOKEN",
        lambda: f"echo '{b64(m.password())}' | base64 -d > /run/password/$TARGET_FILE",
    ]
    return [m.r.choice(pool)() for _ in range(m.r.randint(2, 4))]


# --- HTTP Basic ---------------------------------------------------------------------------------------


def basic_family(m: Maker) -> tuple[list[Line], list[str]]:
    token = b64(f"{m.r.choice([m.user(), 'ci-bot', 'jenkins', 'admin@acme.io'])}:{m.password()}")
    shape = m.r.randrange(6)
    p = Plant("basic_auth", token)
    lines: list[Line]
    if shape == 0:
        lines = [["> GET /v2/_catalog HTTP/1.1"], ["> Host: registry.internal"], ["> Authorization: Basic ", p]]
    elif shape == 1:
        lines = [["GET /api/v1/status HTTP/1.1"], ["authorization: basic ", p]]
    elif shape == 2:
        lines = [["webhook.url=https://hooks.internal/deploy"], ["auth-header=Basic ", p]]
    elif shape == 3:
        lines = [["location /upstream/ {"], ['    proxy_set_header Authorization "Basic ', p, '";'], ["}"]]
    elif shape == 4:
        lines = [['{"auths": {"https://index.docker.io/v1/": {"auth": "', p, '"}}}']]
    else:
        lines = [["Proxy-Authorization: Basic ", p]]
    return lines, basic_negatives(m)


def basic_negatives(m: Maker) -> list[str]:
    pool: list[Callable[[], str]] = [
        lambda: f"Authorization: Basic {b64(m.s(24))}",  # no colon: a token, not user:password
        lambda: "Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",  # RFC 7617's example
        lambda: f"Authorization: Basic {b64('user:password')}",
        lambda: f"Authorization: Basic {b64('admin:')}",
        lambda: f"Authorization: Basic {b64(':' + 'nouser')}",
        lambda: "Authorization: Basic ${BASIC_CREDENTIALS}",
        lambda: "Authorization: Basic <base64-credentials>",
        lambda: 'WWW-Authenticate: Basic realm="Access to the staging site", charset="UTF-8"',
        lambda: "nginx.ingress.kubernetes.io/auth-type: basic",
        lambda: f'{{"auths": {{"ghcr.io": {{"auth": "{b64("user:<token>")}"}}}}}}',
        lambda: f"Authorization: Basic {b64('deploy:xxxxxxxxxxxx')}",
    ]
    return [m.r.choice(pool)() for _ in range(m.r.randint(2, 4))]


# --- driver-qualified and JDBC database URLs ---------------------------------------------------------------


def db_family(m: Maker) -> tuple[list[Line], list[str]]:
    pw = m.password(symbols="-_.~")
    host = m.host()
    user = m.user()
    schemes = [
        "postgresql+psycopg2",
        "postgresql+psycopg",
        "postgresql+asyncpg",
        "mysql+pymysql",
        "mysql+mysqldb",
        "mysql+aiomysql",
        "oracle+oracledb",
        "mssql+pyodbc",
        "mongodb+srv",
    ]
    shape = m.r.randrange(len(schemes) + 3)
    p = Plant("db_url", pw)
    lines: list[Line]
    if shape < len(schemes):
        scheme = schemes[shape]
        lead = m.r.choice(["SQLALCHEMY_DATABASE_URI=", 'engine = create_engine("', "  url: "])
        lines = [[lead, f"{scheme}://{user}:", p, f"@{host}/app"]]
    elif shape == len(schemes):
        lines = [["spring.datasource.url=", f"jdbc:postgresql://{host}:5432/app?user={user}&password=", p, "&ssl=true"]]
    elif shape == len(schemes) + 1:
        lines = [["jdbc.url=", f"jdbc:mysql://{user}:", p, f"@{host}:3306/app?useSSL=true"]]
    else:
        if m.r.random() < 0.5:
            lines = [
                [
                    f'String url = "jdbc:sqlserver://{host}:1433;databaseName=app;user={user};password=',
                    p,
                    ';encrypt=true";',
                ]
            ]
        else:
            lines = [[f"db.url=jdbc:oracle:thin:{user}/", p, f"@//{host}:1521/ORCLPDB1"]]
    return lines, db_negatives(m)


def db_negatives(m: Maker) -> list[str]:
    pool: list[Callable[[], str]] = [
        lambda: "SQLALCHEMY_DATABASE_URI=sqlite:///./app.db",
        lambda: "SQLALCHEMY_DATABASE_URI=postgresql+psycopg2://app:${DB_PASSWORD}@db:5432/app",
        lambda: "url: mysql+pymysql://root:root@localhost/test",
        lambda: "jdbc:postgresql://localhost/test?user=fred&password=secret&ssl=true",  # pgJDBC docs' example
        lambda: "spring.datasource.url=jdbc:postgresql://db:5432/app?user=app&password=<password>",
        lambda: "jdbc:mysql://db.internal:3306/app?useSSL=false&serverTimezone=UTC",
        lambda: "jdbc:sqlserver://db:1433;databaseName=app;user=sa;password={your_password};",
        lambda: "mongodb+srv://<username>:<password>@cluster0.mongodb.net/?retryWrites=true",
        lambda: "jdbc:oracle:thin:@//db.internal:1521/ORCLPDB1",
        lambda: f"postgresql+asyncpg://app@{m.host()}/app",
        lambda: "DATABASE_URL=postgresql+psycopg2://app:changeme@db/app",
        lambda: "jdbc:postgresql://db/app?user=app&password=xxxxxxxx",
    ]
    return [m.r.choice(pool)() for _ in range(m.r.randint(2, 4))]


# --- secrets under names that say what they are --------------------------------------------------------


def named_family(m: Maker) -> tuple[list[Line], list[str]]:
    shape = m.r.randrange(10)
    lines: list[Line]
    if shape == 8:
        # Rails: the secret_key_base is 128 hex characters (bin/rails secret).
        lines = [["SECRET_KEY_BASE=", Plant("generic", m.hex(128))]]
    elif shape == 9:
        # Laravel: APP_KEY=base64:<32 random bytes> (php artisan key:generate).
        key = base64.b64encode(bytes(m.r.randrange(256) for _ in range(32))).decode()
        lines = [["APP_KEY=", Plant("generic", f"base64:{key}")]]
    elif shape == 0:
        name = m.r.choice(["ENCRYPTION_KEY", "DATA_ENCRYPTION_KEY", "SIGNING_KEY", "MASTER_KEY", "HMAC_KEY"])
        lines = [[f"{name}=", Plant("generic", m.hex(64))]]
    elif shape == 1:
        name = m.r.choice(["encryption_key", "cookie_key", "aes_key"])
        lines = [[f'  {name}: "', Plant("generic", m.hex(m.r.choice([32, 64]))), '"']]
    elif shape == 2:
        name = m.r.choice(["DB_PASSWORD", "REDIS_PASSWORD", "SMTP_PASSWORD"])
        lines = [[f'os.environ["{name}"] = "', Plant("generic", m.password()), '"']]
    elif shape == 3:
        lines = [["os.environ['API_TOKEN'] = '", Plant("generic", m.s(40)), "'"]]
    elif shape == 4:
        lines = [['os.environ.setdefault("DB_PASSWORD", "', Plant("generic", m.password()), '")']]
    elif shape == 5:
        lines = [
            ["docker login -u deploy -p ", Plant("generic", m.password(symbols="-_.~")), " registry.internal:5000"]
        ]
    elif shape == 6:
        lines = [["+ docker login --password ", Plant("generic", m.password(symbols="-_.~")), " --username ci ghcr.io"]]
    else:
        lines = [["DB_PASS=", Plant("generic", m.password())]]
    return lines, named_negatives(m)


def named_negatives(m: Maker) -> list[str]:
    pool: list[Callable[[], str]] = [
        lambda: f"sha256:{m.hex(64)}",
        lambda: f"Digest: sha256:{m.hex(64)}",
        lambda: f"{m.hex(64)}  release.tar.gz",
        lambda: f"CHECKSUM={m.hex(64)}",
        lambda: f"GIT_COMMIT={m.hex(40)}",
        lambda: f"image: registry.internal/api@sha256:{m.hex(64)}",
        lambda: f"BUILD_ID={m.uuid()}",
        lambda: f"ENCRYPTION_KEY_ID={m.uuid()}",
        lambda: f"trace_id={m.uuid()}",
        lambda: f"commit {m.hex(40)}",
        lambda: "ENCRYPTION_KEY=${ENCRYPTION_KEY}",
        lambda: "ENCRYPTION_KEY=<encryption-key>",
        lambda: "ENCRYPTION_KEY=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        lambda: 'os.environ["DB_PASSWORD"] = "changeme"',
        lambda: 'db_password = os.environ["DB_PASSWORD"]',
        lambda: 'os.environ.setdefault("DB_PASSWORD", "")',
        lambda: "docker login -u deploy -p $DOCKER_PASSWORD registry.internal",
        lambda: "docker login -u ${{ github.actor }} -p ${{ secrets.GITHUB_TOKEN }} ghcr.io",
        lambda: 'echo "$CI_REGISTRY_PASSWORD" | docker login --password-stdin -u "$CI_REGISTRY_USER" "$CI_REGISTRY"',
        lambda: "docker login -u deploy -p *** registry.internal",
        lambda: f"GITHUB_TOKEN={m.github_bad_checksum()}",
        lambda: "bypass=true",
        lambda: "docker run -p 8080:80 nginx",
    ]
    return [m.r.choice(pool)() for _ in range(m.r.randint(2, 4))]


GENERATORS: dict[str, Callable[[Maker], tuple[list[Line], list[str]]]] = {
    "ci_log": ci_log,
    "base64": base64_family,
    "basic_auth": basic_family,
    "db_url": db_family,
    "named": named_family,
}
NEGATIVES: dict[str, Callable[[Maker], list[str]]] = {
    "ci_log": lambda m: ci_negatives(m, Clock(m)),
    "base64": base64_negatives,
    "basic_auth": basic_negatives,
    "db_url": db_negatives,
    "named": named_negatives,
}


def _document(m: Maker, family: str, name: str, positives: bool) -> Document:
    b = Builder()
    units: list[list[Line]] = []
    if positives:
        lines, negs = GENERATORS[family](m)
        units.append(lines)
    else:
        negs = NEGATIVES[family](m)
    units += [[[neg]] for neg in negs]
    units += [[["LOG_LEVEL=info"], [f"PORT={m.r.randint(3000, 9000)}"]] for _ in range(m.r.randint(0, 2))]
    m.r.shuffle(units)
    for unit in units:
        for line in unit:
            b.emit(*line)
    return Document(name, b.text, b.labels)


def generate(seed: int, per_family: int = 120) -> list[FamilyDocument]:
    """``per_family`` documents with one planted credential (and hard negatives) per family, plus as many
    again with hard negatives only."""
    m = Maker(random.Random(seed))
    out = []
    for family in FAMILIES:
        for i in range(per_family):
            out.append(FamilyDocument(family, _document(m, family, f"{family}-{i:04d}", positives=True)))
            out.append(FamilyDocument(family, _document(m, family, f"{family}-neg-{i:04d}", positives=False)))
    return out


def labels_of(docs: list[FamilyDocument]) -> list[Label]:
    return [x for d in docs for x in d.document.labels]


__all__ = ["FAMILIES", "FamilyDocument", "generate", "labels_of"]
