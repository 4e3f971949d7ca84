"""Scores and learns many rows at once with river's HalfSpaceTrees, equal to its
`score_one` and `learn_one`.

`score_one` and `learn_one` walk every tree in Python, about 20 us a row each, and a
closing window scores thousands of account-windows. Here the trees are walked level by
level for all rows at once with numpy. The trees stay river's: their splits are read once
per build and their reference masses once per pivot; learning writes the counts of the
nodes the rows passed and pivots as `learn_one` does. Tests hold the scores, masses,
counter and pivots equal to river's, row for row.

Masses and powers of two are whole numbers far below 2**53, so the float sums are exact
and their order does not matter.
"""

from __future__ import annotations

import numpy as np
from river import anomaly


def _heap_order(root, height: int) -> list:
    """The nodes of a complete tree of `height`, the children of node k at 2k+1 and 2k+2."""
    out, level = [], [root]
    for _ in range(height):
        out += level
        level = [child for node in level for child in node.children]
    return out + level


# Below this many rows a walk at once costs more than river's own walk of each row.
FEW_ROWS = 12


class BatchScorer:
    """Holds one model's splits as arrays; rebuilt when the model's trees change."""

    def __init__(self) -> None:
        self.roots: list = []
        self.nodes: list[list] = []
        self.feature = np.zeros((0, 0), dtype=np.int64)
        self.threshold = np.zeros((0, 0))
        self.mass = np.zeros((0, 0))
        self.mass_key: int | None = None  # the `masses_key` `mass` was read under

    def _build(self, model: anomaly.HalfSpaceTrees, columns: list[str]) -> None:
        self.roots = list(model.trees)
        self.nodes = [_heap_order(t, model.height) for t in model.trees]
        index = {name: i for i, name in enumerate(columns)}
        branches = 2**model.height - 1  # the rest are leaves, never split on
        self.feature = np.array(
            [[index[n.feature] for n in nodes[:branches]] for nodes in self.nodes], np.int64
        )
        self.threshold = np.array([[n.threshold for n in nodes[:branches]] for nodes in self.nodes])

    def _ensure_built(self, model: anomaly.HalfSpaceTrees, columns: list[str]) -> None:
        if len(self.roots) != len(model.trees) or any(
            a is not b for a, b in zip(self.roots, model.trees, strict=True)
        ):
            self._build(model, columns)
            self.mass_key = None

    def _child(
        self, X: np.ndarray, rows: np.ndarray, trees: np.ndarray, node: np.ndarray
    ) -> np.ndarray:
        """The child each row goes to from `node` (heap order), per tree: left when its
        value is below the split's threshold, as river walks."""
        right = ~(X[rows, self.feature[trees, node]] < self.threshold[trees, node])
        return 2 * node + 1 + right

    def _paths(self, X: np.ndarray, height: int) -> np.ndarray:
        """How many rows of X pass through each node, per tree (heap order): the nodes
        `learn_one` adds one to for each row."""
        n_trees, width = len(self.nodes), len(self.nodes[0])
        trees = np.arange(n_trees)[:, None]
        rows = np.arange(len(X))[None, :]
        node = np.zeros((n_trees, len(X)), dtype=np.int64)
        passed = [node]
        for _ in range(height):
            node = self._child(X, rows, trees, node)
            passed.append(node)
        flat = np.concatenate([trees * width + p for p in passed], axis=None)
        return np.bincount(flat, minlength=n_trees * width).reshape(n_trees, width)

    def learn(self, model: anomaly.HalfSpaceTrees, X: np.ndarray, columns: list[str]) -> None:
        """`model.learn_one` of each row of X in order, with the same masses, counter and
        pivots after it: the rows between two pivots are walked at once, and only the
        nodes they pass are written. One `learn_one` a row walked every tree in Python,
        about 25 us a row."""
        start = 0
        if not model.trees and len(X):  # the first row builds the trees (river's way)
            _learn_one_by_one(model, X[:1], columns)
            start = 1
        while start < len(X):
            self._ensure_built(model, columns)
            stop = min(len(X), start + model.window_size - model.counter)
            if stop - start < FEW_ROWS:
                _learn_one_by_one(model, X[start:stop], columns)
                start = stop
                continue
            counts = self._paths(X[start:stop], model.height)
            trees, nodes = np.nonzero(counts)
            passed = counts[trees, nodes].tolist()  # Python ints, as learn_one keeps
            for t, k, c in zip(trees.tolist(), nodes.tolist(), passed, strict=True):
                self.nodes[t][k].l_mass += c
            model.counter += stop - start
            if model.counter == model.window_size:  # as learn_one pivots
                for nodes in self.nodes:
                    for node in nodes:
                        node.r_mass = node.l_mass
                        node.l_mass = 0
                model._first_window = False
                model.counter = 0
            start = stop

    def scores(
        self,
        model: anomaly.HalfSpaceTrees,
        X: np.ndarray,
        columns: list[str],
        masses_key: int | None = None,
    ) -> np.ndarray:
        """`model.score_one` of each row of X, whose columns are named `columns` and hold
        every feature the trees split on.

        The reference masses change only when the model pivots its window (`pivots`).
        A caller that counts pivots passes the count as `masses_key`, and the masses are
        read again only when it moves: reading every node's mass took about a third of
        the scoring time. None: read them at every call."""
        n = len(X)
        if model._first_window or n == 0:
            return np.zeros(n)
        self._ensure_built(model, columns)
        if masses_key is None or masses_key != self.mass_key:
            self.mass = np.array(
                [[node.r_mass for node in nodes] for nodes in self.nodes], np.float64
            )
            self.mass_key = masses_key
        mass = self.mass
        limit = 0.1 * model.window_size
        trees = np.arange(len(self.nodes))[:, None]
        rows = np.arange(n)[None, :]
        node = np.zeros((len(self.nodes), n), dtype=np.int64)
        walking = np.ones(node.shape, dtype=bool)
        total = np.zeros(node.shape)
        for depth in range(model.height):
            r = mass[trees, node]
            total += np.where(walking, r * 2.0**depth, 0.0)
            walking &= r >= limit  # score_one stops below the size limit
            node = self._child(X, rows, trees, node)
        total += np.where(walking, mass[trees, node] * 2.0**model.height, 0.0)
        return 1.0 - total.sum(axis=0) / model._max_score


def pivots(model: anomaly.HalfSpaceTrees, rows: int) -> int:
    """How many times `model` pivots its window (its reference masses change) while it
    learns `rows` more rows: at every `window_size`-th row, counted from its `counter`."""
    return (model.counter + rows) // model.window_size


def _learn_one_by_one(model: anomaly.HalfSpaceTrees, X: np.ndarray, columns: list[str]) -> None:
    for row in X.tolist():
        model.learn_one(dict(zip(columns, row, strict=True)))
