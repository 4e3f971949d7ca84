"""`[webhook]`: checked in one line naming the key; its secret only from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.core.config import ConfigError
from streams.core.config_checks import webhook_secret_problem
from streams.core.config_load import config_from_dict, from_env, load_config


def test_webhook_table_is_typed_and_the_secret_comes_from_the_environment(tmp_path: Path) -> None:
    p = tmp_path / "vigil.toml"
    p.write_text(
        '[webhook]\nurl = "https://tickets.example/hooks"\nsecret_env = "TICKETS_KEY"\n'
        'min_severity = "high"\ncategories = ["key_leak"]\nmax_retries = 2\n'
    )
    cfg = load_config(p)
    w = cfg.webhook
    assert (w.url, w.min_severity, w.categories, w.max_retries) == (
        "https://tickets.example/hooks",
        "high",
        ("key_leak",),
        2,
    )
    assert webhook_secret_problem(cfg) == (
        "webhook.secret_env: environment variable TICKETS_KEY is not set or empty"
    )
    cfg = from_env(cfg, {"TICKETS_KEY": "k-123456"})
    assert cfg.webhook.secret == "k-123456"
    assert webhook_secret_problem(cfg) is None
    assert "k-123456" not in repr(cfg)  # a logged config never shows it


def test_no_webhook_needs_no_secret() -> None:
    cfg = from_env(config_from_dict({}), {})
    assert cfg.webhook.url == "" and webhook_secret_problem(cfg) is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"url": "ftp://x.example/h"}, "webhook.url: must be an http:// or https:// URL"),
        ({"url": "https:///nohost"}, "webhook.url: must be an http:// or https:// URL"),
        ({"url": "https://x.example", "secret": "s"}, "webhook.secret: not in the file"),
        ({"url": "https://x.example", "secret_env": ""}, "webhook.secret_env: must name"),
        ({"url": "https://x.example", "categories": ["nope"]}, "webhook.categories: unknown"),
        ({"url": "https://x.example", "min_severity": "huge"}, "webhook.min_severity:"),
        ({"url": "https://x.example", "timeout_s": 0}, "webhook.timeout_s: must be > 0"),
        ({"url": "https://x.example", "max_retries": -1}, "webhook.max_retries: must be >= 0"),
        ({"url": "https://x.example", "queue_size": 0}, "webhook.queue_size: must be > 0"),
        (
            {"url": "https://x.example", "backoff_base_s": 5, "backoff_cap_s": 1},
            "webhook.backoff_cap_s: must be >= backoff_base_s",
        ),
        ({"url": "https://x.example", "retries": 3}, "webhook: unknown key(s) retries"),
    ],
)
def test_bad_webhook_settings_fail_in_one_line(table: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict({"webhook": table})
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)
