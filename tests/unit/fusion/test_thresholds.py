"""Per-category thresholds and severity floors (`[fusion.thresholds]`, `[fusion.min_severity]`)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest

from streams.core.alerts import CATEGORIES, SEVERITIES, Alert
from streams.core.config import ConfigError, FusionConfig, VigilConfig
from streams.core.config_checks import replace_fusion
from streams.engine.engine import Engine
from streams.replay.reader import open_input, read_batches


def _alerts(events: Path, fusion: FusionConfig) -> list[Alert]:
    engine = Engine(dataclasses.replace(VigilConfig(), fusion=fusion))
    out: list[Alert] = []
    with open_input(str(events)) as fh:
        for lines in read_batches(fh, 4096):
            out += engine.process_lines(lines).alerts
    return out + engine.flush().alerts


@pytest.fixture(scope="module")
def default_alerts(small_corpus) -> list[Alert]:
    return _alerts(small_corpus[0], FusionConfig())


def test_naming_every_category_at_the_global_threshold_changes_nothing(
    small_corpus, default_alerts
) -> None:
    same = FusionConfig(thresholds=dict.fromkeys(CATEGORIES, 0.5))

    def body(a: Alert) -> dict:  # the config's version differs: it names the thresholds
        return {k: v for k, v in a.to_dict().items() if k != "config_version"}

    assert [body(a) for a in _alerts(small_corpus[0], same)] == [body(a) for a in default_alerts]


def test_a_category_held_to_a_higher_threshold_alerts_less(small_corpus, default_alerts) -> None:
    counts = Counter(a.category for a in default_alerts)
    top, n = counts.most_common(1)[0]
    strict = FusionConfig(thresholds={top: 0.99})
    got = Counter(a.category for a in _alerts(small_corpus[0], strict))
    assert got[top] < n
    # The other categories still alert: the threshold is per category.
    assert sum(v for k, v in got.items() if k != top) >= 0.8 * (len(default_alerts) - n)


def test_severity_floor_keeps_only_alerts_at_or_above_it(small_corpus, default_alerts) -> None:
    floor = FusionConfig(min_severity=dict.fromkeys(CATEGORIES, "high"))
    got = _alerts(small_corpus[0], floor)
    assert got and all(SEVERITIES.index(a.severity) >= 2 for a in got)
    assert len(got) < len(default_alerts)


def test_replace_fusion_checks_the_new_settings() -> None:
    cfg = replace_fusion(VigilConfig(), FusionConfig(thresholds={"key_leak": 0.7}))
    assert cfg.fusion.threshold_of("key_leak") == 0.7
    assert cfg.fusion.threshold_of("anomaly") == 0.5
    assert cfg.fusion.floor() == 0.5
    with pytest.raises(ConfigError, match="fusion.thresholds.keyleak: not a category"):
        replace_fusion(cfg, FusionConfig(thresholds={"keyleak": 0.7}))


def test_thresholds_are_part_of_the_config_version() -> None:
    from streams.core.config_version import config_version

    base = config_version(VigilConfig())
    empty = replace_fusion(VigilConfig(), FusionConfig(thresholds={}, min_severity={}))
    assert config_version(empty) == base
    some = replace_fusion(VigilConfig(), FusionConfig(thresholds={"anomaly": 0.7}))
    floor = replace_fusion(VigilConfig(), FusionConfig(min_severity={"anomaly": "high"}))
    assert len({base, config_version(some), config_version(floor)}) == 3
