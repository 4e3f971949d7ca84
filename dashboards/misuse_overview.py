"""Misuse overview: what the on-call engineer opens first when paged about alert volume."""

from __future__ import annotations

from dashboards.grafana import (
    console_data_link,
    console_link,
    console_variable,
    dashboard,
    gauge,
    rate,
    row,
    sel,
    standard_variables,
    stat,
    target,
    text,
    textbox_variable,
    thresholds,
    timeseries,
)

UID = "vigil-misuse-overview"
ALERTS = f"sum({rate('vigil_alerts_total')})"
WINDOWS = f"sum({rate('vigil_account_windows_scored_total')})"
ACTIVE = f"sum({sel('vigil_active_accounts')})"
BUDGET = f"{ALERTS} * 3600 / $alert_budget"

BUDGET_STEPS = thresholds((None, "green"), (0.8, "orange"), (1.0, "red"))


def backlog_row() -> list[dict]:
    """What the analysts have yet to triage (from the console, which reads the store)."""
    by_sev = "max by (alert_severity)"
    return [
        row("Analyst backlog"),
        timeseries(
            "Open alerts by severity and age",
            "Alerts waiting for a first verdict, by severity and how long they have waited.",
            [
                target(
                    f"sum by (alert_severity, age) ({sel('vigil_backlog_open_alerts')})",
                    "{{alert_severity}} {{age}}",
                )
            ],
            "short",
            stacked=True,
            width=8,
        ),
        timeseries(
            "Oldest open alert by severity",
            "How long the oldest alert of each severity has waited for a verdict; the "
            "analyst-backlog alert fires when it passes the severity's SLA.",
            [
                target(
                    f"{by_sev} ({sel('vigil_backlog_oldest_age_seconds')})", "{{alert_severity}}"
                ),
                target(
                    f"{by_sev} ({sel('vigil_backlog_over_sla_alerts')})",
                    "{{alert_severity}} past SLA (count)",
                ),
            ],
            "s",
            width=8,
        ),
        timeseries(
            "Verdicts per hour",
            "Verdicts analysts gave, per hour, by verdict: the rate the backlog drains at.",
            [
                target(
                    f"sum by (verdict) ({rate('vigil_backlog_verdicts_total')}) * 3600",
                    "{{verdict}}",
                )
            ],
            "short",
            width=8,
        ),
        timeseries(
            "Console requests by status",
            "Requests per second the analyst console answered, by status class; 5xx pages "
            "on-call when it passes 5%.",
            [target(f"sum by (status) ({rate('vigil_console_requests_total')})", "{{status}}")],
            "reqps",
            width=24,
        ),
    ]


def build() -> dict:
    console = [{"title": "Open the analyst console", "url": "${console_url}", "targetBlank": True}]
    panels = [
        stat(
            "Alerts per minute",
            "Misuse alerts emitted per minute over all selected workers.",
            [target(f"{ALERTS} * 60", "alerts/min")],
            "short",
            links=console,
        ),
        stat(
            "Share of scored account-windows alerted",
            "Alerts divided by account-windows scored: how much of the traffic the "
            "detectors flag. A sudden jump usually means a detector fault, not an attack.",
            [target(f"{ALERTS} / {WINDOWS}", "alerted share")],
            "percentunit",
        ),
        stat(
            "Active accounts alerted per hour",
            "Alerts per hour divided by accounts with live state: an upper bound on the "
            "share of active accounts alerted, since one account can alert more than once.",
            [target(f"{ALERTS} * 3600 / {ACTIVE}", "alerted per hour")],
            "percentunit",
        ),
        gauge(
            "Alert budget used",
            "Current alert rate per hour against the hourly budget in the alert_budget "
            "variable (the number of alerts the analysts can triage in an hour).",
            [target(BUDGET, "budget used")],
            "percentunit",
            defaults={"min": 0, "max": 1.5, "thresholds": BUDGET_STEPS},
        ),
        timeseries(
            "Alerts per minute by category and severity",
            "Misuse alerts per minute, stacked by category and severity.",
            [
                target(
                    f"sum by (category, severity) ({rate('vigil_alerts_total')}) * 60",
                    "{{category}} / {{severity}}",
                )
            ],
            "short",
            stacked=True,
            width=16,
            links=console,
            defaults={
                "links": [
                    console_data_link(
                        "Open these alerts in the console",
                        "category=${__field.labels.category}&severity=${__field.labels.severity}",
                    )
                ]
            },
        ),
        text(
            "Analyst console",
            "Where analysts triage, snooze and label the alerts counted here.",
            "Alerts are triaged in the **[Vigil analyst console](${console_url})**.\n\n"
            "- [Open alert queue](${console_url}/alerts)\n"
            "- Set the console address in the *Analyst console* variable above.",
            width=8,
            height=8,
        ),
        timeseries(
            "Alert budget used over time",
            "Hourly alert pace against the alert_budget variable; above 100% the queue "
            "grows faster than analysts can work it.",
            [target(BUDGET, "budget used")],
            "percentunit",
            defaults={"thresholds": BUDGET_STEPS},
        ),
        timeseries(
            "Share of scored account-windows alerted over time",
            "Alerts divided by account-windows scored, per selected worker set.",
            [target(f"{ALERTS} / {WINDOWS}", "alerted share")],
            "percentunit",
        ),
        timeseries(
            "Alerts per minute by severity",
            "Misuse alerts per minute by severity; critical and high page the analysts.",
            [target(f"sum by (severity) ({rate('vigil_alerts_total')}) * 60", "{{severity}}")],
            "short",
            defaults={
                "links": [
                    console_data_link(
                        "Open these alerts in the console", "severity=${__field.labels.severity}"
                    )
                ]
            },
        ),
        timeseries(
            "Alerts held back per minute",
            "Alerts suppressed by per-account cooldown or an analyst's snooze, per minute.",
            [target(f"sum by (cause) ({rate('vigil_alerts_suppressed_total')}) * 60", "{{cause}}")],
            "short",
        ),
        *backlog_row(),
    ]
    variables = [
        *standard_variables(),
        console_variable(),
        textbox_variable(
            "alert_budget",
            "Alert budget per hour",
            "120",
            "Alerts per hour the analyst team can triage",
        ),
    ]
    return dashboard(
        UID,
        "Vigil / Misuse overview",
        "Misuse alert volume, its share of traffic and the analysts' alert budget.",
        panels,
        variables,
        links=[console_link()],
    )
