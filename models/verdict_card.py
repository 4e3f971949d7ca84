"""MODEL_CARD.md for a model directory trained from verdicts."""

from __future__ import annotations


def _kept(q: dict, kind: str) -> str:
    v = q[kind]
    return (
        f"{v['accounts_kept']}/{v['accounts']} accounts, "
        f"{v['windows_kept']}/{v['windows']} windows still alert"
    )


def render(card: dict) -> str:
    td = card["training_data"]
    held = card["heldout"]
    q = held["at_threshold"]
    events = "\n".join(f"- `{e['path']}` sha256 `{e['sha256']}`" for e in td["events"])
    files = "\n".join(f"- `{e['path']}` sha256 `{e['sha256']}`" for e in td["verdict_files"])
    per = "\n".join(
        f"| {verdict} | {cat} | {n} |"
        for verdict, cats in td["verdicts"].items()
        for cat, n in cats.items()
    )
    inactive = f"\n**Inactive**: {held['inactive']}.\n" if "inactive" in held else ""
    settings = ", ".join(f"{k}={v}" for k, v in card["settings"].items())
    return f"""# Model card: verdict gate `{card["version"]}` over `{card["parent"]["version"]}`

**What it is**: the parent classifier `{card["parent"]["version"]}` (`{card["parent"]["path"]}`,
copied unchanged) and a verdict gate: {card["model"]} on {len(card["features"])} window
features and the scores of {", ".join(card["scored"])}. For every window that crosses the
alert threshold ({card["alert_threshold"]}), the gate gives the probability that an analyst
would call it misuse; below **{card["threshold"]:.4f}** the alert is vetoed, above it the
alert lists the probability as the `verdict_gate` detector score.
{inactive}
**Training data**: the windows the parent model's engine raised alerts on, recomputed by
replaying these events through the engine:

{events}

and these verdict files:

{files}

| verdict | category | verdicts |
|---|---|---|
{per}

{td["verdicts_on_a_window"]} verdicts were found on a window ({td["verdicts_on_no_window"]}
on none: their alert was not raised by this parent and config). A verdict also covers the
account's windows during the {card["cooldown_s"]} s cooldown after its alert. Judged windows:
{td["windows"]["misuse"]} misuse ({td["accounts"]["misuse"]} accounts),
{td["windows"]["false_positive"]} false positive ({td["accounts"]["false_positive"]} accounts);
`needs_info` verdicts are not labels. Unjudged windows used as negatives: {td["weak_negatives"]}.

**Held-out** ({held["method"]}), at the threshold:
misuse: {_kept(q, "misuse")}; false positive: {_kept(q, "false_positive")}.

**ONNX parity** (training windows): {card["onnx_parity_max_abs_diff"]:.2e}.

**Settings**: {settings}.
"""
