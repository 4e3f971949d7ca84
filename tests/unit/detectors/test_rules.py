"""Rules declared in config (detectors/rules.py)."""

from __future__ import annotations

import pytest

from detectors.rules import RulesDetector
from streams.core.config import ConfigError, RuleConfig
from streams.core.config_load import config_from_dict
from streams.engine.build import build_detectors


def test_a_rule_on_a_feature_the_windows_do_not_compute_is_refused() -> None:
    """Regression: such a rule read the feature as missing and could never fire, silently."""
    with pytest.raises(ValueError, match=r"rules\.r\.feature: 'tokenz' is not a feature"):
        RulesDetector((RuleConfig(name="r", feature="tokenz", op=">", threshold=1.0),))
    cfg = config_from_dict(
        {"rules": [{"name": "r", "feature": "tokenz", "op": ">", "threshold": 1}]}
    )
    with pytest.raises(ConfigError, match="tokenz"):  # what the CLI turns into one line
        build_detectors(cfg, classifier=False)
    assert RulesDetector((RuleConfig(name="r", feature="tokens", op=">", threshold=1.0),))
