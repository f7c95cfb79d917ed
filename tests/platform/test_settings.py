"""Settings: defaults, validation, production refusal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from timo_hub.platform.settings import (
    DEV_KEY_PEPPER,
    Settings,
    SettingsError,
    broker_url_for_redis,
)


def test_defaults_use_embedded_servers_under_dot_timo() -> None:
    settings = Settings.from_env({})
    assert settings.env == "development"
    assert settings.home == (Path.cwd() / ".timo").resolve()
    assert settings.uses_embedded_services
    assert settings.key_pepper == DEV_KEY_PEPPER


def test_environment_is_read_and_blank_values_count_as_unset(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "TIMO_ENV": "test",
            "TIMO_HOME": str(tmp_path),
            "TIMO_DATABASE_URL": "postgresql://db.example/timo",
            "TIMO_REDIS_URL": "redis://cache.example:6379/2",
            "TIMO_BROKER_URL": "  ",
        }
    )
    assert settings.env == "test"
    assert settings.home == tmp_path
    assert not settings.uses_embedded_services
    assert settings.broker_url is None
    assert settings.effective_broker_url == "redis://cache.example:6379/2"


def test_broker_follows_an_embedded_redis_socket() -> None:
    assert broker_url_for_redis("unix:///tmp/x/redis.sock?db=0") == (
        "redis+socket:///tmp/x/redis.sock?virtual_host=0"
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TIMO_ENV", "staging", "TIMO_ENV: must be one of development, test, production"),
        ("TIMO_DATABASE_URL", "mysql://x/y", "TIMO_DATABASE_URL must start with one of"),
        ("TIMO_REDIS_URL", "http://x", "TIMO_REDIS_URL must start with one of"),
        ("TIMO_BROKER_URL", "sqs://x", "TIMO_BROKER_URL must start with one of"),
    ],
)
def test_invalid_values_are_named(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({variable: value})


def test_production_refuses_every_dev_default() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"TIMO_ENV": "production"})
    message = str(caught.value)
    assert "TIMO_DATABASE_URL is required" in message
    assert "TIMO_REDIS_URL is required" in message
    assert "TIMO_KEY_PEPPER must be set" in message
    assert "TIMO_SECRET_KEY must be set" in message


def test_production_refuses_a_short_secret_key() -> None:
    with pytest.raises(SettingsError, match="TIMO_SECRET_KEY must be at least 32 characters"):
        Settings.from_env(
            {
                "TIMO_ENV": "production",
                "TIMO_DATABASE_URL": "postgresql://db/timo",
                "TIMO_REDIS_URL": "redis://cache/0",
                "TIMO_KEY_PEPPER": "p" * 40,
                "TIMO_SECRET_KEY": "short",
            }
        )


def test_public_url_must_be_http_and_loses_its_trailing_slash() -> None:
    assert Settings.from_env({"TIMO_PUBLIC_URL": "https://hub.example/"}).base_url == (
        "https://hub.example"
    )
    assert Settings.from_env({}).base_url == "http://127.0.0.1:8000"
    with pytest.raises(SettingsError, match="TIMO_PUBLIC_URL must start with"):
        Settings.from_env({"TIMO_PUBLIC_URL": "ftp://hub.example"})


def test_production_refuses_a_short_pepper() -> None:
    with pytest.raises(SettingsError, match="at least 32 characters"):
        Settings.from_env(
            {
                "TIMO_ENV": "production",
                "TIMO_DATABASE_URL": "postgresql://db/timo",
                "TIMO_REDIS_URL": "redis://cache/0",
                "TIMO_KEY_PEPPER": "short",
            }
        )


def test_production_starts_with_real_settings() -> None:
    settings = Settings.from_env(
        {
            "TIMO_ENV": "production",
            "TIMO_DATABASE_URL": "postgresql://db/timo",
            "TIMO_REDIS_URL": "redis://cache/0",
            "TIMO_BROKER_URL": "amqp://guest:guest@mq//",
            "TIMO_KEY_PEPPER": "p" * 40,
            "TIMO_SECRET_KEY": "s" * 40,
        }
    )
    assert settings.effective_broker_url == "amqp://guest:guest@mq//"


def test_cli_exits_non_zero_with_a_clear_message_in_production_with_defaults() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMO_")}
    env["TIMO_ENV"] = "production"
    result = subprocess.run(
        [sys.executable, "-m", "timo_hub.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "TIMO_KEY_PEPPER must be set" in result.stderr
    assert "Traceback" not in result.stderr


def test_cluster_mode_needs_a_node_a_network_url_and_a_broker() -> None:
    # A cluster cannot be embedded, reached over a Unix socket, or serve as kombu's broker.
    with pytest.raises(SettingsError, match="TIMO_REDIS_CLUSTER=true needs TIMO_REDIS_URL"):
        Settings.from_env({"TIMO_REDIS_CLUSTER": "true"})
    with pytest.raises(SettingsError, match="redis:// or rediss://"):
        Settings.from_env(
            {"TIMO_REDIS_CLUSTER": "true", "TIMO_REDIS_URL": "unix:///tmp/redis.sock?db=0"}
        )
    on_cluster = Settings.from_env(
        {"TIMO_REDIS_CLUSTER": "true", "TIMO_REDIS_URL": "redis://10.0.0.5:7000/0"}
    )
    assert on_cluster.redis_cluster
    with pytest.raises(SettingsError, match="a Redis Cluster cannot be the broker"):
        _ = on_cluster.effective_broker_url
    with_broker = Settings.from_env(
        {
            "TIMO_REDIS_CLUSTER": "true",
            "TIMO_REDIS_URL": "redis://10.0.0.5:7000/0",
            "TIMO_BROKER_URL": "amqp://guest:guest@10.0.0.6:5672//",
        }
    )
    assert with_broker.effective_broker_url == "amqp://guest:guest@10.0.0.6:5672//"
    assert not Settings.from_env({}).redis_cluster
