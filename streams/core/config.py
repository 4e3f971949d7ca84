"""Frozen, typed configuration.

Config is plain data: a TOML file parsed into frozen dataclasses (config_load.py), checked
as a whole before any work starts (config_checks.py). The environment is read only at the
edge (`config_load.from_env`), never deep inside the engine, so a test can build any
config it wants without touching `os.environ`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from streams.core.alerts import Severity
from streams.core.webhook_config import WebhookConfig

ProcessingGuarantee = Literal["at_least_once", "exactly_once"]
MIN_STATE_BUDGET = 16 * 1024**2
# Largest record Vigil sends of its own (a campaign exchange record, a forwarded event):
# under the producer's 1,000,000 bytes, with room for the key and headers.
MAX_RECORD_BYTES = 900 * 1024
# Of a raw line in a dead letter, this much is kept (under the producer's record limit).
DEAD_LETTER_MAX_BYTES = 900 * 1024


class ConfigError(ValueError):
    """A config file or value is wrong; the message names the key."""


@dataclass(frozen=True)
class RuleConfig:
    """One declarative rule: fires when `feature` `op` `threshold` on an account-window."""

    name: str
    feature: str
    op: Literal[">", ">=", "<", "<="]
    threshold: float
    score: float = 0.9
    category: str = "anomaly"
    plans: tuple[str, ...] = ()  # empty: every plan
    text: str = ""


DEFAULT_RULES: tuple[RuleConfig, ...] = (
    RuleConfig(
        name="free_tier_token_quota",
        feature="tokens",
        op=">",
        threshold=200_000,
        plans=("free",),
        category="free_tier_farming",
        text="free-plan account used {value:,.0f} tokens in one window (quota {threshold:,.0f})",
    ),
    RuleConfig(
        name="request_rate_ceiling",
        feature="requests",
        op=">",
        threshold=3_000,
        score=0.8,
        text="{value:,.0f} requests in one window exceeds the ceiling of {threshold:,.0f}",
    ),
    RuleConfig(
        name="auth_failure_burst_per_ip",
        feature="ip_auth_fail_accounts",
        op=">=",
        threshold=10,
        score=0.95,
        category="credential_stuffing",
        text="an IP used by this account failed auth on {value:.0f} accounts",
    ),
)


@dataclass(frozen=True)
class EngineConfig:
    window_s: int = 300
    allowed_lateness_s: int = 60
    max_future_s: int = 86_400
    account_ttl_s: int = 3 * 86_400
    max_accounts: int = 2_000_000
    max_line_bytes: int = 65_536
    dedup_horizon_s: int = 3_600
    campaign_horizon_s: int = 6 * 3_600
    campaign_max_keys: int = 200_000
    # Secret key of the string codes (streams/contract/codes.py); every process of a deployment
    # needs the same one. The default is the public demo key.
    hash_key: str = "vigil-demo-hash-key-not-a-secret"
    # Bytes of engine state (accounts, open windows, dedup ids, campaign indexes) before the
    # idlest accounts are evicted and open windows closed early; see streams/engine/budget.py.
    state_budget_bytes: int = 2 * 1024**3


@dataclass(frozen=True)
class PlatformConfig:
    """Facts about the platform being watched (its published limits), not tuned values."""

    free_daily_tokens: int = 250_000  # the free plan's daily token allowance


@dataclass(frozen=True)
class FusionConfig:
    alert_threshold: float = 0.5
    severity_thresholds: tuple[float, float, float] = (0.6, 0.8, 0.95)  # medium, high, critical
    cooldown_s: int = 3_600
    min_requests: int = 3
    # Score the classifier by its calibrated probability (the card's isotonic map, fitted
    # on generated traffic). Off by default: see README, Quality.
    classifier_calibrated: bool = False
    # `[fusion.thresholds]`: the fused score an alert of a category needs, per category
    # (names from streams/core/alerts.py CATEGORIES); a category not named uses
    # alert_threshold. `vigil calibrate` writes these.
    thresholds: dict[str, float] = field(default_factory=dict)
    # `[fusion.min_severity]`: per category, alerts below this severity are not raised.
    min_severity: dict[str, Severity] = field(default_factory=dict)

    def threshold_of(self, category: str) -> float:
        return self.thresholds.get(category, self.alert_threshold)

    def floor(self) -> float:
        """The lowest fused score any category can alert at."""
        return min([self.alert_threshold, *self.thresholds.values()])


@dataclass(frozen=True)
class ConsoleConfig:
    """The analyst console's queue settings (`[console]` in the config file)."""

    # Minutes a case may wait for an analyst, per severity: low, medium, high, critical.
    sla_minutes: tuple[float, float, float, float] = (1440.0, 240.0, 60.0, 15.0)
    # A value (user agent, /24, ...) on more than this share of accounts is background.
    common_link_share: float = 0.02
    # Signs session cookies; from VIGIL_CONSOLE_SECRET. None: one per process (loopback only).
    secret: str | None = None


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str = "127.0.0.1:9092"
    input_topic: str = "api-usage"
    alerts_topic: str = "vigil-alerts"
    # A shadow model's alerts (`[worker] shadow_model`): never the alert topic or a pager.
    shadow_alerts_topic: str = "vigil-shadow-alerts"
    dead_letter_topic: str = "vigil-dead-letters"
    snapshots_topic: str = "vigil-account-snapshots"
    labels_topic: str = "vigil-labels"
    snoozes_topic: str = "vigil-snoozes"
    partitions: int = 8
    # The partitioner the input topic's producers place records keyed by account_id with:
    # "murmur2" (the Java client, kafka-python, aiokafka) or "crc32" (librdkafka's default:
    # kcat, confluent-kafka, and the other clients built on it). An account's state lives
    # on the partition this gives it; records placed otherwise are forwarded there, so the
    # setting changes only how many are. Every worker of a group needs the same one, and
    # changing it moves accounts: a checkpoint written under the other stops the worker
    # (docs/kafka.md, "Topics and records").
    input_partitioner: Literal["murmur2", "crc32"] = "murmur2"
    replication_factor: int = 1
    processing_guarantee: ProcessingGuarantee = "at_least_once"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_cafile: str = ""
    group_id: str = "vigil"
    # How long a Kafka client of the CLI, console or worker start-up tries the bootstrap
    # servers before it stops in one line. The clients' own default, 30 s, was a long wait
    # to learn of a typo or a broker that is down.
    bootstrap_timeout_s: float = 10.0
    # Compacted: promotions, rollbacks and config versions that running workers switch to
    # (docs/kafka.md, "Control and snooze topics").
    control_topic: str = "vigil-control"


@dataclass(frozen=True)
class BaselineParams:
    """The per-account baseline: one online series detector per metric."""

    avg_alpha: float = 0.1  # smoothing of the usual value shown in reasons
    series: dict[str, float] = field(default_factory=lambda: {"abs_floor": 0.5})
    # A rise counts only above usual + 3 sqrt(usual) + this, per metric: requests, tokens,
    # failed requests, new IPs, content-filtered requests (per window).
    noise_floor: tuple[float, float, float, float, float] = (5.0, 5000.0, 5.0, 3.0, 5.0)


@dataclass(frozen=True)
class PopulationParams:
    """river HalfSpaceTrees over scaled account-window vectors."""

    n_trees: int = 10
    height: int = 8
    window_size: int = 250
    seed: int = 42
    min_requests: int = 5
    learn_every: int = 4
    hist_decay: float = 0.999  # per window, of the score-rank reference and the usual row
    rank_floor: float = 0.98  # score 0 below this quantile of recent raw scores


@dataclass(frozen=True)
class CampaignParams:
    min_group: int = 3  # accounts sharing a value before it counts at all
    full_group: int = 6  # ... and before it counts fully
    young_days: float = 2.0  # accounts younger than this count as new


@dataclass(frozen=True)
class TakeoverParams:
    """A country new to an established account, seen beside its usual ones and growing."""

    start: float = 2.0  # windows of overlap before it counts at all
    full: float = 6.0  # ... and before it counts fully
    share: float = 0.5  # of the account's recent requests
    top: float = 0.85  # the score it reaches


@dataclass(frozen=True)
class ClassifierParams:
    enabled: bool = True
    intra_op_threads: int = 1


@dataclass(frozen=True)
class DetectorsConfig:
    baseline: BaselineParams = field(default_factory=BaselineParams)
    population: PopulationParams = field(default_factory=PopulationParams)
    campaign: CampaignParams = field(default_factory=CampaignParams)
    takeover: TakeoverParams = field(default_factory=TakeoverParams)
    classifier: ClassifierParams = field(default_factory=ClassifierParams)


@dataclass(frozen=True)
class WorkerSettings:
    """`[worker]`: how one `vigil worker` process runs; its command-line flags override."""

    data_dir: Path = Path("data/worker")  # RocksDB table stores
    shadow_model: str = ""  # a challenger beside the model; its alerts go to their own topic
    web_port: int = 6066  # /metrics and /health
    web_host: str = "127.0.0.1"
    checkpoint_interval_s: float = 5.0
    # One fetch round-trip to the consumer thread carries this many records at most.
    max_poll_records: int = 10_000
    max_partition_fetch_bytes: int = 4 * 1024 * 1024
    # Longest the broker holds a fetch for partitions with nothing new (consumer.py says
    # why it matters): the Java client's default, not Faust's 1500.
    fetch_max_wait_ms: int = 500
    repartition: bool = True  # forward records not keyed/partitioned by account
    # Per account-window feature snapshots for the console.
    emit_snapshots: bool = True
    # Snapshots go out at the first checkpoint after this long: the latest per account.
    # A live stream closes a window every few minutes, so this only thins out a backlog.
    snapshot_interval_s: float = 30.0
    dead_letter_max_bytes: int = DEAD_LETTER_MAX_BYTES  # raw payload kept in a dead letter
    # A campaign request or figures record over this goes in parts: the producer refuses
    # records over 1,000,000 bytes (streams/kafka/campaign_records.py).
    exchange_record_bytes: int = 512 * 1024
    # An engine with more windows closed and not yet scored than this (they wait for the
    # campaign figures) pauses the worker's input partitions until it is under again:
    # working off a backlog, intake outran scoring and memory grew with the backlog.
    # Unset: by the processing guarantee (`flow_bounds`).
    max_unscored_windows: int | None = None
    # ... and pauses an input partition whose event time leads the slowest source's by more
    # than this: the engines hold every event ahead of the slowest source in open windows,
    # and a catch-up read some partitions hours ahead of others. Unset: as above.
    max_source_lead_s: float | None = None
    # ... and, while the events its engines hold unscored pass this many bytes, pauses
    # every input partition but the slowest: the two bounds above are in event time, so
    # what they hold grows with the event rate (backpressure.py). Unset: no such bound.
    max_unscored_bytes: int | None = None
    # A partition whose checkpoint cannot be used opens empty from its committed offsets
    # (losing its open windows' events) instead of stopping the worker.
    discard_unreadable_state: bool = False
    # A crashed worker's partitions move to the others after this long.
    session_timeout_s: float = 10.0
    recovery_stuck_s: float = 120.0  # /health turns 503 after this long in recovery
    stall_s: float = 60.0  # ... or after this long with lag and no progress
    audit_topic: str = ""  # when set, one record per processed batch: partition/offset range
    state_table: str = "engine-state"
    loglevel: str = "WARNING"
    classifier: bool = True  # False: run on the other detectors (asked for explicitly)
    # An input partition whose records stop coming for this long (wall clock) no longer
    # holds back the event time of the engines it feeds (streams/kafka/watermarks.py).
    source_idle_s: float = 30.0
    # exactly_once: while the campaign exchange waits on commits, its records are committed
    # this often between checkpoints (docs/kafka.md, "Exchange commits between
    # checkpoints"). 0: off; the exchange then moves only at checkpoints, which come after
    # 1 s instead of the interval while it waits.
    exchange_commit_s: float = 0.25

    # The internal topics belong to one consumer group, as its changelog does: another
    # group on the same input (a second deployment, a group reset to a new id, a benchmark
    # round) must neither read this group's event-time marks, which cover forwards that
    # group has not made, nor its campaign requests and figures.
    def repartition_topic(self, cfg: KafkaConfig) -> str:
        return f"{cfg.group_id}-by-account"

    def campaign_topic(self, cfg: KafkaConfig) -> str:
        """The campaign exchange between engines and key owners (streams/kafka/campaign.py)."""
        return f"{cfg.group_id}-campaign"


@dataclass(frozen=True)
class VigilConfig:
    engine: EngineConfig = field(default_factory=EngineConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    rules: tuple[RuleConfig, ...] = DEFAULT_RULES
    detectors: DetectorsConfig = field(default_factory=DetectorsConfig)
    platform: PlatformConfig = field(default_factory=PlatformConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    model_path: str = ""  # empty: the shipped default model
    store_url: str = ""  # empty: no alert store
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)


# (max_unscored_windows, max_source_lead_s) when unset, by processing guarantee.
AT_LEAST_ONCE_FLOW = (12, 600.0)
EXACTLY_ONCE_FLOW = (24, 1800.0)


def flow_bounds(w: WorkerSettings, exactly_once: bool) -> tuple[int, float]:
    """(max_unscored_windows, max_source_lead_s), the unset ones by the guarantee. Under
    exactly_once the other sources' event time moves only at commits, so the lead has to
    cover what a source reads between two: at 600 s the input waited on every commit,
    and 1,800 s with 24 windows ran about 35% faster. Under at_least_once the larger
    bounds gained nothing measurable and held about 200 MiB more (docs/kafka.md,
    Backpressure)."""
    unscored, lead = EXACTLY_ONCE_FLOW if exactly_once else AT_LEAST_ONCE_FLOW
    return (
        unscored if w.max_unscored_windows is None else w.max_unscored_windows,
        lead if w.max_source_lead_s is None else w.max_source_lead_s,
    )
