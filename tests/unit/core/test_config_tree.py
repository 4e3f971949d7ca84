"""One config tree: [engine], [fusion], [[rules]], [detectors.NAME], [kafka], [worker]."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.core.config import ConfigError, flow_bounds
from streams.core.config_load import config_from_dict, load_config
from streams.engine.engine import build_detectors


def test_detector_parameters_reach_the_detectors() -> None:
    cfg = config_from_dict(
        {
            "detectors": {
                "population": {"n_trees": 4, "height": 5, "hist_decay": 0.99, "rank_floor": 0.9},
                "campaign": {"min_group": 4, "full_group": 9, "young_days": 3.5},
                "baseline": {"avg_alpha": 0.2, "noise_floor": [1, 2, 3, 4, 5]},
                "takeover": {"start": 1.0, "full": 3.0},
                "classifier": {"enabled": False},
            }
        }
    )
    dets = build_detectors(cfg)
    assert dets["population"].params()["n_trees"] == 4
    assert dets["population"].params()["height"] == 5
    assert (dets["population"].hist_decay, dets["population"].rank_floor) == (0.99, 0.9)
    assert dets["campaign"].params() == {
        "min_group": 4,
        "full_group": 9,
        "free_daily_tokens": 250_000,
        "young_days": 3.5,
    }
    assert dets["baseline"].params()["avg_alpha"] == 0.2
    assert dets["baseline"].params()["noise_floor"] == (1.0, 2.0, 3.0, 4.0, 5.0)
    assert (dets["takeover"].start, dets["takeover"].full) == (1.0, 3.0)
    assert "classifier" not in dets


def test_worker_table_is_typed_and_checked(tmp_path: Path) -> None:
    p = tmp_path / "vigil.toml"
    p.write_text('[worker]\ndata_dir = "/var/lib/vigil"\nweb_port = 7000\nemit_snapshots = false\n')
    w = load_config(p).worker
    assert (w.data_dir, w.web_port, w.emit_snapshots) == (Path("/var/lib/vigil"), 7000, False)
    with pytest.raises(ConfigError, match="worker.web_port"):
        config_from_dict({"worker": {"web_port": 70000}})
    # Exchange records over the producer's limit would stop the worker at its first window.
    for bad in (100, 2_000_000):
        with pytest.raises(ConfigError, match="worker.exchange_record_bytes"):
            config_from_dict({"worker": {"exchange_record_bytes": bad}})
    # An event over the producer's record limit could not be forwarded to its partition.
    with pytest.raises(ConfigError, match="engine.max_line_bytes: 2000000 is over"):
        config_from_dict({"engine": {"max_line_bytes": 2_000_000}})
    assert config_from_dict({"engine": {"max_line_bytes": 900 * 1024}}).engine.max_line_bytes
    # No window may be held at all: the input would never be taken in.
    with pytest.raises(ConfigError, match="worker.max_unscored_windows"):
        config_from_dict({"worker": {"max_unscored_windows": 0}})
    with pytest.raises(ConfigError, match="worker.max_source_lead_s"):
        config_from_dict({"worker": {"max_source_lead_s": -1}})
    with pytest.raises(ConfigError, match="worker.max_unscored_bytes"):
        config_from_dict({"worker": {"max_unscored_bytes": 0}})
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="worker.exchange_commit_s"):
            config_from_dict({"worker": {"exchange_commit_s": bad}})
    assert config_from_dict({"worker": {"exchange_commit_s": 0}}).worker.exchange_commit_s == 0
    for bad in (0, -1, 601):
        with pytest.raises(ConfigError, match="kafka.bootstrap_timeout_s"):
            config_from_dict({"kafka": {"bootstrap_timeout_s": bad}})


RULE = {"name": "r", "feature": "tokens", "op": ">", "threshold": 1, "category": "key_leak"}


def test_a_rules_category_and_text_are_checked_before_any_alert_needs_them() -> None:
    """Regression: text "{nosuch}" passed, then every window the rule fired in failed
    (processing_error dead letters); category "nocat" went out in alerts."""
    with pytest.raises(ConfigError, match=r"rules\.r\.text: '\{nosuch\}'"):
        config_from_dict({"rules": [{**RULE, "text": "{nosuch}"}]})
    with pytest.raises(ConfigError, match=r"rules\.r\.category: 'nocat'"):
        config_from_dict({"rules": [{**RULE, "category": "nocat"}]})
    ok = config_from_dict({"rules": [{**RULE, "text": "{value:.0f} tokens over {threshold}"}]})
    assert ok.rules[0].text.startswith("{value")


def test_flow_bounds_follow_the_guarantee_unless_set() -> None:
    """Under exactly_once the marks a source's lead is measured against move once per
    commit, so its bounds are wider (docs/kafka.md, Backpressure); a value set wins."""
    w = config_from_dict({}).worker
    assert flow_bounds(w, exactly_once=False) == (12, 600.0)
    assert flow_bounds(w, exactly_once=True) == (24, 1800.0)
    set_ = config_from_dict({"worker": {"max_unscored_windows": 3, "max_source_lead_s": 90}})
    assert flow_bounds(set_.worker, exactly_once=True) == (3, 90.0)
    one = config_from_dict({"worker": {"max_source_lead_s": 90}}).worker
    assert flow_bounds(one, exactly_once=True) == (24, 90.0)


@pytest.mark.parametrize(
    ("data", "names"),
    [
        ({"detectors": {"population": {"trees": 3}}}, "detectors.population: unknown key(s) trees"),
        ({"detectors": {"nope": {}}}, "detectors: unknown key(s) nope"),
        ({"worker": {"datadir": "x"}}, "worker: unknown key(s) datadir"),
        ({"detectors": {"campaign": {"min_group": 5, "full_group": 3}}}, "detectors.campaign"),
        ({"detectors": {"baseline": {"avg_alpha": 0}}}, "detectors.baseline.avg_alpha"),
        ({"detectors": {"baseline": {"series": {"abs_floor": "x"}}}}, "detectors.baseline.series"),
        ({"detectors": {"baseline": {"noise_floor": [1, 2]}}}, "detectors.baseline.noise_floor"),
        ({"detectors": {"baseline": {"noise_floor": [1, 2, 3, 4, -5]}}}, "noise_floor"),
        ({"detectors": {"population": {"hist_decay": 1.5}}}, "detectors.population.hist_decay"),
        ({"detectors": {"population": {"rank_floor": 1.0}}}, "detectors.population.rank_floor"),
        ({"detectors": {"campaign": {"young_days": 0}}}, "detectors.campaign.young_days"),
        ({"detectors": {"takeover": {"start": 5, "full": 2}}}, "detectors.takeover"),
        ({"fusion": {"thresholds": {"leak": 0.7}}}, "fusion.thresholds.leak: not a category"),
        ({"fusion": {"thresholds": {"key_leak": 0}}}, "fusion.thresholds.key_leak"),
        ({"fusion": {"min_severity": {"spam": "high"}}}, "fusion.min_severity.spam"),
        ({"fusion": {"min_severity": {"anomaly": "severe"}}}, "fusion.min_severity.anomaly"),
    ],
)
def test_unknown_or_bad_keys_are_named(data: dict, names: str) -> None:
    with pytest.raises(ConfigError, match=names.replace("(", r"\(").replace(")", r"\)")):
        config_from_dict(data)


def test_a_series_parameter_the_detector_lacks_is_a_config_error() -> None:
    cfg = config_from_dict({"detectors": {"baseline": {"series": {"no_such_knob": 1.0}}}})
    with pytest.raises(ConfigError, match="detectors"):
        build_detectors(cfg, classifier=False)
