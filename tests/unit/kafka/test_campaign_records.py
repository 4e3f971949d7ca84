"""Campaign topic records round-trip: memberships (uint64 codes, account ids) and figures."""

from __future__ import annotations

import numpy as np
import orjson

from streams.features.campaign_split import KeyFigures, Memberships
from streams.kafka.campaign import decode_figures, decode_request, encode_figures, encode_request


def test_request_round_trips_with_full_width_codes() -> None:
    account = np.empty(2, object)
    account[:] = ["acct_é", "b"]
    m = Memberships(
        600.0,
        np.array([0, 3], np.int8),
        np.array([2**64 - 1, 5], np.uint64),
        account,
        np.array([4, 1], np.int64),
        np.array([True, False]),
    )
    s, w, back = decode_request(orjson.loads(encode_request(3, 600.0, m)))
    assert (s, w) == (3, 600.0)
    for f in ("kind", "code", "account", "events", "bad"):
        assert getattr(back, f).dtype == getattr(m, f).dtype
        assert getattr(back, f).tolist() == getattr(m, f).tolist()


def test_figures_round_trip() -> None:
    figures = {(1, 2**63 + 9): KeyFigures(3, 2, ["a", "b", "c"]), (0, 1): KeyFigures(1, 0, [])}
    owner, w, back = decode_figures(orjson.loads(encode_figures(5, 900.0, figures)))
    assert (owner, w, back) == (5, 900.0, figures)
