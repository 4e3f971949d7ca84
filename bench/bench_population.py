"""The population detector's scoring and learning, batched against river's row at a time.

Feeds the account-window features of the benchmarks' generated corpus to two population
detectors, one window at a time, cut into the share of each of eight partition engines
(as a Kafka worker's engines see them): the detector as it is (`BatchScorer.learn`, masses
read once per pivot) and one that learns each row with river's `learn_one` and reads every
node's mass at every call, as before. The two alternate over the repeats; the scores must
be equal, row for row.

    python bench/bench_population.py [--accounts 2000] [--hours 2] [--partitions 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from detectors.population import _NAMES, PopulationDetector  # noqa: E402
from streams.core.batch import FeatureBatch  # noqa: E402
from streams.engine.engine import Engine  # noqa: E402
from streams.replay.reader import open_input, replay  # noqa: E402
from synth.generate import generated  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "data" / "bench"


class RowByRow(PopulationDetector):
    """The detector before batched learning: river's learn_one for each row, and every
    node's mass read at every scoring call."""

    def learn(self, batch: FeatureBatch) -> None:
        idx = self._active(batch)
        picks = idx[(np.arange(len(idx)) + self._tick) % self.learn_every == 0]
        self._tick += len(idx)
        rows = self._matrix(batch.take(picks)).tolist() if len(picks) else []
        for row in rows:
            self.model.learn_one(dict(zip(_NAMES, row, strict=True)))
        self._seen += len(picks)
        if len(picks):
            M = self._matrix(batch.take(picks))
            self._usual_sum = self._usual_sum * self.hist_decay + M.sum(axis=0)
            self._usual_weight = self._usual_weight * self.hist_decay + len(M)

    def raw_scores(self, batch: FeatureBatch) -> tuple[np.ndarray, np.ndarray]:
        idx = self._active(batch)
        if self._seen < self.window_size or len(idx) == 0:
            return idx, np.zeros(0)
        return idx, self._scorer.scores(self.model, self._matrix(batch.take(idx)), _NAMES)


def windows(accounts: int, hours: float, partitions: int) -> list[FeatureBatch]:
    """Each closed window's feature rows, split by account code into `partitions` shares."""
    events, _ = generated(DATA, accounts, hours, seed=4242)
    out: list[FeatureBatch] = []
    engine = Engine(detectors={}, on_features=out.append)
    with open_input(str(events)) as fh:
        replay(engine, fh, sink=lambda o: None)
    shares = []
    for b in out:
        part = (b.accounts % np.uint64(partitions)).astype(np.int64)
        shares += [b.take(np.flatnonzero(part == p)) for p in range(partitions)]
    return [s for s in shares if len(s)]


def run(make, shares: list[FeatureBatch]) -> tuple[float, list[np.ndarray]]:
    det = make()
    scores = []
    t = time.perf_counter()
    for b in shares:
        scores.append(det.score_learn(b))
    return time.perf_counter() - t, scores


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=2000)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    shares = windows(args.accounts, args.hours, args.partitions)
    rows = sum(len(s) for s in shares)
    print(
        f"{len(shares)} calls, {rows:,} account-windows, median {int(np.median([len(s) for s in shares]))} a call"
    )
    times: dict[str, list[float]] = {"batched": [], "row by row": []}
    for r in range(args.repeats):
        order = [("batched", PopulationDetector), ("row by row", RowByRow)]
        results = {}
        for name, make in order if r % 2 == 0 else order[::-1]:
            took, scores = run(make, shares)
            times[name].append(took)
            results[name] = scores
        same = all(
            np.array_equal(a, b)
            for a, b in zip(results["batched"], results["row by row"], strict=True)
        )
        if not same:
            raise SystemExit("the two detectors scored differently")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(
            f"{name:>11}: median {med * 1e3:8.1f} ms, {med / len(shares) * 1e6:6.0f} us a call ({', '.join(f'{t * 1e3:.0f}' for t in ts)})"
        )
    ratio = statistics.median(times["row by row"]) / statistics.median(times["batched"])
    print(f"row by row / batched: {ratio:.2f}; scores equal in every repeat")


if __name__ == "__main__":
    main()
