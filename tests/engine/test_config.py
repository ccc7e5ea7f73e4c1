"""Settings from the environment (engine/config.py, SPEC §1): defaults, validation, master key sources."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from lockzero.engine.config import DEFAULT_DATABASE_URL, ConfigError, load_settings
from lockzero.engine.security.crypto import MasterKey

PG = "postgresql://u:canarypw@127.0.0.1:5432/lz"


def key_b64() -> str:
    return MasterKey.generate().to_base64()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_defaults() -> None:
    s = load_settings({}, create_embedded_key=False)
    assert s.database_url == DEFAULT_DATABASE_URL == "sqlite:///./.lockzero/lockzero.db"
    assert s.embedded
    assert s.state_dir == Path(".lockzero")
    assert s.redis_url is None
    assert (s.host, s.port) == ("127.0.0.1", 8080)
    assert s.allowed_origins == ()
    assert s.master_key is None
    assert s.created_master_key_file is None


def test_empty_values_mean_defaults() -> None:
    s = load_settings(
        {"LOCKZERO_DATABASE_URL": "", "LOCKZERO_PORT": "", "LOCKZERO_HOST": "", "LOCKZERO_REDIS_URL": ""},
        create_embedded_key=False,
    )
    assert (s.database_url, s.port, s.host, s.redis_url) == (DEFAULT_DATABASE_URL, 8080, "127.0.0.1", None)


def test_explicit_values() -> None:
    s = load_settings(
        {
            "LOCKZERO_DATABASE_URL": PG,
            "LOCKZERO_REDIS_URL": "redis://127.0.0.1:6379/0",
            "LOCKZERO_HOST": "0.0.0.0",
            "LOCKZERO_PORT": "9090",
            "LOCKZERO_ALLOWED_ORIGINS": " https://a.example , ,https://b.example,",
        }
    )
    assert s.database_url == PG
    assert not s.embedded and s.state_dir is None
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert (s.host, s.port) == ("0.0.0.0", 9090)
    assert s.allowed_origins == ("https://a.example", "https://b.example")
    # PostgreSQL mode never invents a key.
    assert s.master_key is None and s.created_master_key_file is None


def test_postgres_scheme_alias_is_accepted() -> None:
    assert not load_settings({"LOCKZERO_DATABASE_URL": "postgres://h/db"}).embedded


@pytest.mark.parametrize("port", ["0", "65536", "abc", "-1", "80.5", " 80", "99999999999"])
def test_bad_port_names_the_variable(port: str) -> None:
    with pytest.raises(ConfigError, match="LOCKZERO_PORT"):
        load_settings({"LOCKZERO_PORT": port}, create_embedded_key=False)


@pytest.mark.parametrize("port", ["1", "65535"])
def test_port_bounds(port: str) -> None:
    assert load_settings({"LOCKZERO_PORT": port}, create_embedded_key=False).port == int(port)


def test_superscript_digit_port_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="LOCKZERO_PORT"):
        load_settings({"LOCKZERO_PORT": "²"}, create_embedded_key=False)


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u:canarypw@127.0.0.1/db",
        "http://example.com/x",
        "sqlite://relative.db",
        "SQLITE:///x.db",
        "canarypw",
    ],
)
def test_bad_database_url_names_the_variable_and_hides_the_url(url: str) -> None:
    with pytest.raises(ConfigError, match="LOCKZERO_DATABASE_URL") as err:
        load_settings({"LOCKZERO_DATABASE_URL": url, "LOCKZERO_MASTER_KEY": key_b64()})
    assert "canarypw" not in str(err.value)
    assert "\n" not in str(err.value)


def test_sqlite_url_without_a_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="LOCKZERO_DATABASE_URL"):
        load_settings({"LOCKZERO_DATABASE_URL": "sqlite:///", "LOCKZERO_MASTER_KEY": key_b64()})


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "redis:/x"])
def test_bad_redis_url_names_the_variable(url: str) -> None:
    with pytest.raises(ConfigError, match="LOCKZERO_REDIS_URL"):
        load_settings({"LOCKZERO_REDIS_URL": url}, create_embedded_key=False)


@pytest.mark.parametrize("url", ["redis://h:6379/0", "rediss://h:6380", "unix:///tmp/redis.sock"])
def test_good_redis_urls(url: str) -> None:
    assert load_settings({"LOCKZERO_REDIS_URL": url}, create_embedded_key=False).redis_url == url


# --- master key ----------------------------------------------------------------------------------


def test_master_key_from_the_environment() -> None:
    text = key_b64()
    s = load_settings({"LOCKZERO_DATABASE_URL": PG, "LOCKZERO_MASTER_KEY": text})
    assert s.require_master_key() == MasterKey.from_base64(text)
    assert s.created_master_key_file is None
    assert text not in repr(s)


@pytest.mark.parametrize(
    "text", ["not-base64!!", base64.b64encode(b"x" * 16).decode(), base64.b64encode(b"x" * 48).decode()]
)
def test_bad_master_key_names_the_variable_without_echoing_it(text: str) -> None:
    with pytest.raises(ConfigError, match="LOCKZERO_MASTER_KEY") as err:
        load_settings({"LOCKZERO_DATABASE_URL": PG, "LOCKZERO_MASTER_KEY": text})
    assert text not in str(err.value)


def test_master_key_from_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = key_b64()
    path = tmp_path / "kek"
    path.write_text(text + "\n")
    path.chmod(0o600)
    s = load_settings({"LOCKZERO_DATABASE_URL": PG, "LOCKZERO_MASTER_KEY_FILE": str(path)})
    assert s.require_master_key() == MasterKey.from_base64(text)
    assert capsys.readouterr().err == ""


def test_world_readable_key_file_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = key_b64()
    path = tmp_path / "kek"
    path.write_text(text)
    path.chmod(0o644)
    s = load_settings({"LOCKZERO_DATABASE_URL": PG, "LOCKZERO_MASTER_KEY_FILE": str(path)})
    assert s.master_key == MasterKey.from_base64(text)
    err = capsys.readouterr().err
    assert "chmod 600" in err and str(path) in err
    assert text not in err


def test_environment_key_wins_over_the_file(tmp_path: Path) -> None:
    text = key_b64()
    s = load_settings(
        {
            "LOCKZERO_DATABASE_URL": PG,
            "LOCKZERO_MASTER_KEY": text,
            "LOCKZERO_MASTER_KEY_FILE": str(tmp_path / "missing"),
        }
    )
    assert s.master_key == MasterKey.from_base64(text)


def test_missing_key_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LOCKZERO_MASTER_KEY_FILE"):
        load_settings({"LOCKZERO_DATABASE_URL": PG, "LOCKZERO_MASTER_KEY_FILE": str(tmp_path / "missing")})


def test_bad_key_file_content_names_the_variable_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    path.write_text("definitely-not-a-key")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="LOCKZERO_MASTER_KEY_FILE") as err:
        load_settings({"LOCKZERO_DATABASE_URL": PG, "LOCKZERO_MASTER_KEY_FILE": str(path)})
    assert "definitely-not-a-key" not in str(err.value)


def test_binary_key_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    path.write_bytes(b"\xff" + os.urandom(31))
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="LOCKZERO_MASTER_KEY_FILE"):
        load_settings({"LOCKZERO_DATABASE_URL": PG, "LOCKZERO_MASTER_KEY_FILE": str(path)})


def test_postgres_mode_without_a_key_refuses_to_start() -> None:
    s = load_settings({"LOCKZERO_DATABASE_URL": PG})
    assert s.master_key is None
    with pytest.raises(ConfigError, match="LOCKZERO_MASTER_KEY") as err:
        s.require_master_key()
    assert "\n" not in str(err.value)


# --- embedded key file ---------------------------------------------------------------------------


def test_embedded_mode_creates_a_0600_key_file_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'state' / 'lockzero.db'}"
    first = load_settings({"LOCKZERO_DATABASE_URL": url})
    path = tmp_path / "state" / "master.key"
    assert first.state_dir == tmp_path / "state"
    assert first.created_master_key_file == path
    assert mode(path) == 0o600
    assert mode(path.parent) & 0o077 == 0
    assert MasterKey.from_base64(path.read_text()) == first.require_master_key()

    second = load_settings({"LOCKZERO_DATABASE_URL": url})
    assert second.created_master_key_file is None
    assert second.master_key == first.master_key
    assert capsys.readouterr().err == ""  # a 0600 file raises no warning


def test_embedded_mode_without_key_creation(tmp_path: Path) -> None:
    s = load_settings({"LOCKZERO_DATABASE_URL": f"sqlite:///{tmp_path / 'lockzero.db'}"}, create_embedded_key=False)
    assert s.master_key is None
    assert not (tmp_path / "master.key").exists()


def test_embedded_mode_prefers_an_explicit_key(tmp_path: Path) -> None:
    text = key_b64()
    s = load_settings({"LOCKZERO_DATABASE_URL": f"sqlite:///{tmp_path / 'lockzero.db'}", "LOCKZERO_MASTER_KEY": text})
    assert s.master_key == MasterKey.from_base64(text)
    assert not (tmp_path / "master.key").exists()


def test_corrupt_embedded_key_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "master.key").write_text("garbage")
    (tmp_path / "master.key").chmod(0o600)
    with pytest.raises(ConfigError, match=r"master\.key"):
        load_settings({"LOCKZERO_DATABASE_URL": f"sqlite:///{tmp_path / 'lockzero.db'}"})


@pytest.mark.parametrize("rate", ["abc", "-1", "nan", "inf", "2000000"])
def test_bad_rate_limit_names_the_variable(rate: str) -> None:
    with pytest.raises(ConfigError, match="LOCKZERO_RATE_LIMIT"):
        load_settings({"LOCKZERO_RATE_LIMIT": rate}, create_embedded_key=False)


def test_rate_limit_values() -> None:
    assert load_settings({}, create_embedded_key=False).rate_limit_per_s == 20.0
    assert load_settings({"LOCKZERO_RATE_LIMIT": "0"}, create_embedded_key=False).rate_limit_per_s == 0.0
    assert load_settings({"LOCKZERO_RATE_LIMIT": "2.5"}, create_embedded_key=False).rate_limit_per_s == 2.5
