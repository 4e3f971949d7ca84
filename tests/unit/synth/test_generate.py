"""The corpus generator over every span its command accepts."""

from __future__ import annotations

import gzip
import json

import pytest

from synth.generate import DEFAULT_START, generate


@pytest.mark.parametrize("hours", [1.0, 1.5, 2.0])
def test_short_spans_generate_misuse_inside_the_span(tmp_path, hours):
    # Regression: spans under 2.5 h failed with "high - low < 0": misuse onsets were drawn
    # at least 2 h in, and cron clients and throw-away accounts could start after the end.
    res = generate(tmp_path, accounts=400, hours=hours, seed=11)
    end = DEFAULT_START + hours * 3600
    labels = json.loads(res.labels_path.read_text())["accounts"]
    misuse = {a for a, v in labels.items() if v["label"] != "benign"}
    assert res.misuse_accounts == len(misuse) > 0
    with gzip.open(res.events_path, "rb") as fh:
        seen: set[str] = set()
        for line in fh:
            try:
                ev = json.loads(line)
            except ValueError:
                continue  # the corpus carries a few malformed lines on purpose
            if isinstance(ev, dict):
                seen.add(str(ev.get("account_id")))
    # Every labelled misuse account sent something, and onsets lie inside the span.
    assert misuse <= seen
    for a in misuse:
        assert DEFAULT_START <= labels[a]["onset"] < end
