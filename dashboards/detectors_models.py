"""Detectors and models: score drift, alert share per detector and the classifier's health."""

from __future__ import annotations

from dashboards.grafana import (
    console_data_link,
    console_link,
    console_variable,
    dashboard,
    heatmap,
    quantile,
    query_variable,
    rate,
    sel,
    standard_variables,
    stat,
    table,
    target,
    thresholds,
    timeseries,
)

UID = "vigil-detectors-models"
DETECTOR = 'detector=~"$detector"'


def build() -> dict:
    panels = [
        heatmap(
            "Score distribution: $detector",
            "Account-windows per second in each score bucket of this detector. A band "
            "that moves up or down over time is score drift.",
            [
                target(
                    f"sum by (le) ({rate('vigil_detector_score_bucket', DETECTOR)})",
                    "{{le}}",
                    fmt="heatmap",
                )
            ],
            # Full width: Grafana splits the row between the repeated copies.
            width=24,
            repeat="detector",
            repeatDirection="h",
            maxPerRow=2,
        ),
        timeseries(
            "Score quantiles by detector",
            "Median and 90th percentile score of each detector over account-windows.",
            [
                target(
                    quantile(0.5, "vigil_detector_score", "detector", DETECTOR), "{{detector}} p50"
                ),
                target(
                    quantile(0.9, "vigil_detector_score", "detector", DETECTOR), "{{detector}} p90"
                ),
            ],
            "percentunit",
        ),
        timeseries(
            "Alert rate per detector",
            "Alerts per minute by the detector that contributed most to each alert.",
            [target(f"sum by (detector) ({rate('vigil_alerts_total')}) * 60", "{{detector}}")],
            "short",
            stacked=True,
            defaults={
                "links": [
                    console_data_link(
                        "Open this detector's alerts in the console",
                        "detector=${__field.labels.detector}",
                    )
                ]
            },
        ),
        table(
            "Model versions",
            "The classifier model each worker loaded.",
            [target(sel("vigil_model_info"), instant=True, fmt="table")],
            width=12,
            height=6,
        ),
        table(
            "Detector versions",
            "The detector versions each worker runs.",
            [target(sel("vigil_detectors_info"), instant=True, fmt="table")],
            width=12,
            height=6,
        ),
        table(
            "Config versions",
            "The detection config each worker runs: a stable hash of its engine, fusion and "
            "rule settings and model path. Workers should agree.",
            [target(sel("vigil_config_info"), instant=True, fmt="table")],
            width=24,
            height=5,
        ),
        timeseries(
            "Alert volume per model and config version",
            "Alerts per minute by the model and config version that produced them. After a "
            "promotion or a config change the old series gives way to the new one; a version "
            "that alerts far more or less than the one before is the first thing to check.",
            [
                target(
                    "sum by (model_version, config_version) "
                    f"({rate('vigil_alerts_by_version_total')}) * 60",
                    "{{model_version}} / {{config_version}}",
                )
            ],
            "short",
            stacked=True,
        ),
        timeseries(
            "Shadow agreement",
            "With a shadow model running beside the champion: accounts alerted per minute by "
            "both, by the champion only and by the shadow only. Shadow alerts never reach the "
            "queue or a pager; promote the shadow when its own alerts hold up.",
            [
                target(
                    f"sum by (agreement) ({rate('vigil_shadow_alerted_accounts_total')}) * 60",
                    "{{agreement}}",
                )
            ],
            "short",
        ),
        stat(
            "Classifier model loaded",
            "Workers whose classifier model failed to load count here as failed.",
            [target(f"min({sel('vigil_model_loaded')})", "loaded")],
            "none",
            defaults={
                "mappings": [
                    {
                        "type": "value",
                        "options": {
                            "0": {"text": "FAILED", "color": "red"},
                            "1": {"text": "loaded", "color": "green"},
                        },
                    }
                ],
                "thresholds": thresholds((None, "red"), (1, "green")),
            },
        ),
        stat(
            "Classifier calls per second",
            "ONNX classifier invocations per second.",
            [target(f"sum({rate('vigil_classifier_inference_seconds_count')})", "calls/s")],
            "short",
        ),
        stat(
            "Account-windows scored per second",
            "Closed account-windows passed through the detectors per second.",
            [target(f"sum({rate('vigil_account_windows_scored_total')})", "windows/s")],
            "short",
            width=12,
        ),
        timeseries(
            "Classifier inference latency",
            "ONNX classifier time per batch, p50 and p99.",
            [
                target(quantile(0.5, "vigil_classifier_inference_seconds"), "p50"),
                target(quantile(0.99, "vigil_classifier_inference_seconds"), "p99"),
            ],
            "s",
        ),
        timeseries(
            "Classifier batch size",
            "Rows per ONNX classifier call, p50 and p99.",
            [
                target(quantile(0.5, "vigil_classifier_batch_size"), "p50"),
                target(quantile(0.99, "vigil_classifier_batch_size"), "p99"),
            ],
            "short",
        ),
    ]
    variables = [
        *standard_variables(),
        query_variable(
            "detector",
            f"label_values({sel('vigil_detector_score_count')}, detector)",
        ),
        console_variable(),
    ]
    return dashboard(
        UID,
        "Vigil / Detectors and models",
        "Detector score distributions, alerts per detector, and classifier versions and speed.",
        panels,
        variables,
        links=[console_link()],
    )
