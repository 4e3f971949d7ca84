"""The gate's fitting rules: accounts weigh the same, folds hold out whole accounts, the
veto threshold keeps every held-out misuse account, and too few false positives leave
the gate unable to veto."""

from __future__ import annotations

import numpy as np

from models.gate_fit import GateSettings, choose_threshold, fit_gate, fold_of, weights


def test_each_account_and_each_class_weigh_the_same() -> None:
    y = np.array([1, 1, 1, 1, 0, 0])
    g = np.array(["a", "a", "a", "b", "c", "d"])
    w = weights(y, g)
    assert np.isclose(w[:3].sum(), w[3])  # a's three windows count as b's one
    assert np.isclose(w[y == 1].sum(), w[y == 0].sum())


def test_folds_hold_out_whole_accounts() -> None:
    g = np.array([f"acct_{i % 40}" for i in range(400)])
    f = fold_of(g, 4)
    for acct in np.unique(g):
        assert len(set(f[g == acct].tolist())) == 1
    assert len(set(f.tolist())) == 4


def test_threshold_keeps_every_misuse_account_of_every_category() -> None:
    p = np.array([0.9, 0.2, 0.6, 0.05, 0.01])
    y = np.array([1, 1, 1, 0, 0])
    g = np.array(["a", "a", "b", "c", "d"])
    c = np.array(["key_leak", "key_leak", "spam_campaign", "", ""])
    s = GateSettings(margin=1.0, cap=1.0)
    t = choose_threshold(p, y, g, c, s)
    assert t == 0.6  # b's only window is 0.6; a keeps its 0.9
    assert choose_threshold(p, y, g, c, GateSettings()) == 0.3  # halved by the margin


def _separable(n_fp_accounts: int):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (60, 3)), rng.normal(4, 1, (6 * n_fp_accounts, 3))])
    y = np.array([1] * 60 + [0] * (6 * n_fp_accounts))
    g = np.array(
        [f"m{i % 12}" for i in range(60)]
        + [f"f{i % n_fp_accounts}" for i in range(6 * n_fp_accounts)]
    )
    c = np.where(y == 1, "key_leak", "")
    return X.astype(np.float32), y, g, c


def test_a_learnable_false_alarm_is_vetoed_out_of_fold() -> None:
    model, t, report = fit_gate(*_separable(8), GateSettings())
    q = report["at_threshold"]
    assert t > 0 and "inactive" not in report
    assert q["misuse"]["accounts_kept"] == q["misuse"]["accounts"] == 12
    assert q["false_positive"]["accounts_kept"] < q["false_positive"]["accounts"] / 2


def test_too_few_false_positive_accounts_never_veto() -> None:
    _, t, report = fit_gate(*_separable(2), GateSettings(min_fp_accounts=3))
    assert t == 0.0 and "fewer than 3" in report["inactive"]
