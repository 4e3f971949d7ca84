"""Checks of a whole configuration: each problem is one line naming the key
(`ConfigError`), raised before a command starts its work."""

from __future__ import annotations

import dataclasses
import math

from streams.core.alerts import CATEGORIES
from streams.core.config import (
    MAX_RECORD_BYTES,
    MIN_STATE_BUDGET,
    ConfigError,
    DetectorsConfig,
    FusionConfig,
    RuleConfig,
    VigilConfig,
)
from streams.core.webhook_config import WebhookConfig, webhook_problem


def validate(cfg: VigilConfig) -> None:
    c = cfg.console
    if any(m <= 0 for m in c.sla_minutes):
        raise ConfigError("console.sla_minutes: every SLA must be > 0 minutes")
    if not 0 < c.common_link_share <= 1:
        raise ConfigError("console.common_link_share: must be in (0, 1]")
    e = cfg.engine
    if e.window_s <= 0 or 86_400 % e.window_s:
        raise ConfigError(f"engine.window_s: {e.window_s} must be > 0 and divide a day")
    if e.allowed_lateness_s < 0:
        raise ConfigError("engine.allowed_lateness_s: must be >= 0")
    for name in ("account_ttl_s", "max_accounts", "max_line_bytes", "dedup_horizon_s"):
        if getattr(e, name) <= 0:
            raise ConfigError(f"engine.{name}: must be > 0")
    if e.max_line_bytes > MAX_RECORD_BYTES:
        raise ConfigError(
            f"engine.max_line_bytes: {e.max_line_bytes} is over {MAX_RECORD_BYTES}: a worker "
            "forwards an event to its account's partition as one record, which must fit "
            "the repartition topic (1 MiB a record on a default broker)"
        )
    if len(e.hash_key) < 16:
        raise ConfigError("engine.hash_key: must be at least 16 characters (a random secret)")
    if e.state_budget_bytes < MIN_STATE_BUDGET:
        raise ConfigError(
            f"engine.state_budget_bytes: {e.state_budget_bytes} is below the minimum "
            f"{MIN_STATE_BUDGET} (16 MiB)"
        )
    validate_fusion(cfg.fusion)
    _validate_detectors(cfg.detectors)
    w = cfg.worker
    for name in (
        "checkpoint_interval_s",
        "session_timeout_s",
        "max_poll_records",
        "source_idle_s",
        "max_unscored_windows",
        "max_source_lead_s",
        "max_unscored_bytes",
    ):
        value = getattr(w, name)
        if value is not None and value <= 0:
            raise ConfigError(f"worker.{name}: must be > 0")
    if not 1024 <= w.exchange_record_bytes <= MAX_RECORD_BYTES:
        raise ConfigError(
            f"worker.exchange_record_bytes: {w.exchange_record_bytes} must be between 1024 "
            f"and {MAX_RECORD_BYTES} (the producer sends at most 1,000,000 bytes a record)"
        )
    if not (math.isfinite(w.exchange_commit_s) and w.exchange_commit_s >= 0):
        raise ConfigError("worker.exchange_commit_s: must be >= 0 (0: no exchange commits)")
    if not 1 <= w.web_port <= 65535:
        raise ConfigError(f"worker.web_port: {w.web_port} is not a port (1-65535)")
    if cfg.platform.free_daily_tokens <= 0:
        raise ConfigError("platform.free_daily_tokens: must be > 0")
    if cfg.kafka.partitions < 1 or cfg.kafka.replication_factor < 1:
        raise ConfigError("kafka.partitions and kafka.replication_factor: must be >= 1")
    if not 0 < cfg.kafka.bootstrap_timeout_s <= 600:
        raise ConfigError(
            f"kafka.bootstrap_timeout_s: {cfg.kafka.bootstrap_timeout_s} must be in (0, 600]"
        )
    _validate_webhook(cfg.webhook)
    seen: set[str] = set()
    for r in cfg.rules:
        if r.name in seen:
            raise ConfigError(f"rules: duplicate rule name {r.name!r}")
        seen.add(r.name)
        _validate_rule(r)


def _validate_rule(r: RuleConfig) -> None:
    """What a rule's alert will say is checked now: a wrong category or text template used
    to pass, then fail every window it fired in (processing_error dead letters)."""
    if r.category not in CATEGORIES:
        raise ConfigError(
            f"rules.{r.name}.category: {r.category!r} is not a category; "
            f"known: {', '.join(CATEGORIES)}"
        )
    try:
        r.text.format(value=1.0, threshold=r.threshold, feature=r.feature, op=r.op)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"rules.{r.name}.text: {r.text!r} is not a template of {{value}}, {{threshold}}, "
            f"{{feature}} and {{op}} ({type(exc).__name__}: {exc})"
        ) from None


def validate_fusion(f: FusionConfig) -> None:
    if not 0 < f.alert_threshold < 1:
        raise ConfigError("fusion.alert_threshold: must be between 0 and 1")
    if list(f.severity_thresholds) != sorted(f.severity_thresholds):
        raise ConfigError("fusion.severity_thresholds: must be increasing")
    for table, values in (("thresholds", f.thresholds), ("min_severity", f.min_severity)):
        for name in values:
            if name not in CATEGORIES:
                raise ConfigError(
                    f"fusion.{table}.{name}: not a category; known: {', '.join(CATEGORIES)}"
                )
    for name, t in f.thresholds.items():
        if not 0 < t <= 1:
            raise ConfigError(f"fusion.thresholds.{name}: {t} must be in (0, 1]")


def replace_fusion(cfg: VigilConfig, fusion: FusionConfig) -> VigilConfig:
    """`cfg` with other fusion settings, checked: what a runner swaps in at run time (new
    thresholds from `vigil calibrate` or the control topic) without rebuilding detectors."""
    validate_fusion(fusion)
    return dataclasses.replace(cfg, fusion=fusion)


def _validate_detectors(d: DetectorsConfig) -> None:
    if not 0 < d.baseline.avg_alpha <= 1:
        raise ConfigError("detectors.baseline.avg_alpha: must be in (0, 1]")
    p = d.population
    for name in ("n_trees", "height", "window_size", "learn_every"):
        if getattr(p, name) < 1:
            raise ConfigError(f"detectors.population.{name}: must be >= 1")
    if any(v < 0 for v in d.baseline.noise_floor):
        raise ConfigError("detectors.baseline.noise_floor: every floor must be >= 0")
    if not 0 < p.hist_decay <= 1:
        raise ConfigError("detectors.population.hist_decay: must be in (0, 1]")
    if not 0 < p.rank_floor < 1:
        raise ConfigError("detectors.population.rank_floor: must be in (0, 1)")
    c = d.campaign
    if not 2 <= c.min_group <= c.full_group:
        raise ConfigError("detectors.campaign: need 2 <= min_group <= full_group")
    if c.young_days <= 0:
        raise ConfigError("detectors.campaign.young_days: must be > 0")
    t = d.takeover
    if not 0 <= t.start < t.full:
        raise ConfigError("detectors.takeover: need 0 <= start < full")
    if not 0 < t.share <= 1 or not 0 < t.top <= 1:
        raise ConfigError("detectors.takeover: share and top must be in (0, 1]")
    if d.classifier.intra_op_threads < 1:
        raise ConfigError("detectors.classifier.intra_op_threads: must be >= 1")


def _validate_webhook(w: WebhookConfig) -> None:
    problem = webhook_problem(w)
    if problem:
        raise ConfigError(problem)


def webhook_secret_problem(cfg: VigilConfig) -> str | None:
    """Why a configured webhook cannot sign, or None; checked by the runners at start-up
    (not by `validate`, so commands that send nothing do not need the secret)."""
    w = cfg.webhook
    if w.url and not w.secret:
        return f"webhook.secret_env: environment variable {w.secret_env} is not set or empty"
    return None
