"""Exact path-dependent TreeSHAP for XGBoost boosters, as a compiled (numba) kernel.

Computes the same numbers as ``Booster.predict(pred_contribs=True, approx_contribs=False)``
(Lundberg et al.'s path-dependent TreeSHAP, bias column last), many times faster, following
the idea of FastTreeSHAP "v2" (Yang 2021): what a leaf adds to each feature depends on the
sample only through which edges of the leaf's path the sample follows.

For each leaf the features on its root-to-leaf path are made unique (a feature split on twice
merges: its *zero fraction* is the product of the cover ratios of its edges, and the sample
*follows* it when it follows all of them).  With ``d`` unique features the sample's relation
to the leaf is a d-bit mask, so the leaf's contribution to each of its features is looked up
in a table of ``2**d x d`` values computed once per model (TreeSHAP's EXTEND/UNWIND on the
path, with the one fractions given by the mask).  The tables of the leaves under a small
subtree (height up to :data:`FRONTIER_HEIGHT`) are then summed into one table indexed by the
mask at the subtree's root and the decisions inside it.  Per sample and tree the kernel walks
the nodes above these subtrees once (parents before children, carrying the mask), and adds one
looked-up row per subtree: at most O(trees x leaves x depth) per sample instead of TreeSHAP's
O(trees x leaves x depth**2), and for depth-4 trees two lookups per tree.

Splits compare ``x < threshold`` in float32 like xgboost; a missing value (NaN) follows the
node's default branch.  The bias is the margin of the empty coalition: the base margin plus
each tree's cover-weighted mean leaf value.

Models the kernel does not handle -- categorical splits, several outputs (multi-class,
multi-target), DART, an objective whose base margin it does not know, or lookup tables over
:data:`MAX_TABLE_ENTRIES` (deep trees) -- raise :class:`Unsupported`; the caller then uses
xgboost's own ``pred_contribs``.

This module imports numba; ``model.ChurnModel.contributions`` imports it only when scoring
needs it, so ``import churnctl.api`` stays free of numba.  Compiled code is cached on disk
(``cache=True``, in ``__pycache__`` or ``NUMBA_CACHE_DIR``), so only the first run of a new
installation pays the compile time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit, prange

log = logging.getLogger("churnctl")

#: Above this many lookup-table values for one model (about 8 bytes each) the model is
#: handed to xgboost instead: a depth-d leaf needs 2**d x d values.
MAX_TABLE_ENTRIES = 16_000_000
#: A leaf with more unique features than this is not tabulated (2**d grows too fast).
MAX_UNIQUE_DEPTH = 16
#: Subtrees up to this height are tabulated whole (their decisions index the table), which
#: saves most lookups: a depth-4 tree needs 2 frontier lookups per row instead of 16 leaf ones.
#: Lower heights are used when the tables would pass :data:`MAX_TABLE_ENTRIES`.
FRONTIER_HEIGHT = 3
#: Rows handed to one parallel task of the kernel.
_BLOCK = 1024
#: Objectives whose stored ``base_score`` (in output space) maps to the margin by logit or as is.
_LOGIT_OBJECTIVES = ("binary:logistic", "reg:logistic")
_IDENTITY_OBJECTIVES = ("reg:squarederror",)


class Unsupported(ValueError):
    """The booster has a feature this kernel does not implement (the message says which)."""


@dataclass
class Forest:
    """A booster's trees in flat arrays, the nodes of each tree in breadth-first order.

    Node arrays are indexed by global node number; ``tree_start[t]:tree_start[t + 1]`` are the
    nodes of tree ``t`` and ``left``/``right`` are tree-local child numbers.  ``role`` is 0 for
    an internal node above the frontier (the kernel passes each row's mask of *cold* path
    features, those the row does not follow, on to its children, the bit ``slot`` standing for
    its split feature), 1 for a *frontier* node and 2 for a node below one.  A frontier node
    is the root of a subtree of height at most :data:`FRONTIER_HEIGHT` whose parent's subtree is
    taller; its table gives the subtree's total contribution to each feature of
    ``fr_feat[fr_feat_start:fr_feat_start + fr_width]`` at
    ``fr_table[fr_table_start + code * fr_width + u]``, where
    ``code = cold << m | (bit j set when the row goes right at sub_nodes[sub_start + j])``
    over the ``m = sub_count`` internal nodes of the subtree.
    """

    n_features: int
    tree_start: np.ndarray
    role: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    default_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    slot: np.ndarray
    sub_start: np.ndarray
    sub_count: np.ndarray
    sub_nodes: np.ndarray
    fr_width: np.ndarray
    fr_feat_start: np.ndarray
    fr_feat: np.ndarray
    fr_table_start: np.ndarray
    fr_table: np.ndarray
    bias: float


# --- reading the booster ------------------------------------------------------------------------
def _base_margin(learner: dict[str, Any]) -> float:
    objective = learner["objective"]["name"]
    raw = str(learner["learner_model_param"]["base_score"]).strip("[]")
    values = [float(v) for v in raw.split(",") if v.strip()]
    if len(values) != 1:
        raise Unsupported(f"{len(values)} base scores (several outputs)")
    base = values[0]
    if objective in _LOGIT_OBJECTIVES:
        base = float(np.float32(base))
        return float(np.log(base) - np.log1p(-base))
    if objective in _IDENTITY_OBJECTIVES:
        return base
    raise Unsupported(f"objective {objective}")


def _tree_order(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Return the tree's node numbers in breadth-first order (reachable nodes only)."""
    order = [0]
    i = 0
    while i < len(order):
        n = order[i]
        if left[n] >= 0:
            order.append(int(left[n]))
            order.append(int(right[n]))
        i += 1
    return np.asarray(order, dtype=np.int64)


@dataclass
class _Tree:
    """One tree, tree-local numbering in breadth-first order, before the tables are built."""

    base: int  # global number of the root
    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    default_left: np.ndarray
    value: np.ndarray
    slot: np.ndarray
    height: np.ndarray
    path_feats: list[list[int]]
    path_zeros: list[list[float]]


def _read_tree(tree: dict[str, Any], n_features: int, base: int) -> tuple[_Tree, float]:
    """Return the tree renumbered breadth-first with its path features, and its mean value."""
    if int(tree["tree_param"].get("size_leaf_vector", 1)) > 1:
        raise Unsupported("vector leaves (multi-target trees)")
    if any(int(s) != 0 for s in tree.get("split_type", [])):
        raise Unsupported("categorical splits")
    lc = np.asarray(tree["left_children"], dtype=np.int64)
    rc = np.asarray(tree["right_children"], dtype=np.int64)
    order = _tree_order(lc, rc)
    local = np.full(len(lc), -1, dtype=np.int64)
    local[order] = np.arange(len(order))
    internal = lc[order] >= 0
    left = np.where(internal, local[np.maximum(lc[order], 0)], -1)
    right = np.where(internal, local[np.maximum(rc[order], 0)], -1)
    cond = np.asarray(tree["split_conditions"], dtype=np.float32)[order]
    feature = np.where(internal, np.asarray(tree["split_indices"], dtype=np.int64)[order], 0)
    if internal.any() and (feature[internal].min() < 0 or feature[internal].max() >= n_features):
        raise Unsupported(f"a split on a feature outside 0..{n_features - 1}")
    cover = np.asarray(tree["sum_hessian"], dtype=np.float32)[order].astype(np.float64)
    n = len(order)

    # Bottom-up: height, and the mean leaf value under the covers (xgboost's node mean values).
    height = np.zeros(n, dtype=np.int64)
    mean = np.zeros(n, dtype=np.float64)
    for i in range(n - 1, -1, -1):
        if internal[i]:
            lft, rgt = left[i], right[i]
            height[i] = 1 + max(height[lft], height[rgt])
            mean[i] = (mean[lft] * cover[lft] + mean[rgt] * cover[rgt]) / cover[i]
        else:
            mean[i] = float(cond[i])

    # Top-down: unique features of the path to each node and their zero fractions (a feature
    # split on again multiplies its zero fraction by the new cover ratio).
    slot = np.zeros(n, dtype=np.int64)
    feats: list[list[int]] = [[] for _ in range(n)]
    zeros: list[list[float]] = [[] for _ in range(n)]
    for i in range(n):
        if not internal[i]:
            continue
        f = int(feature[i])
        k = feats[i].index(f) if f in feats[i] else len(feats[i])
        slot[i] = k
        for child in (left[i], right[i]):
            ratio = cover[child] / cover[i] if cover[i] != 0 else 0.0
            cf, cz = list(feats[i]), list(zeros[i])
            if k == len(cf):
                cf.append(f)
                cz.append(ratio)
            else:
                cz[k] *= ratio
            feats[child], zeros[child] = cf, cz
    out = _Tree(base, left, right, feature, np.where(internal, cond, np.float32(0)),
                np.asarray(tree["default_left"], dtype=np.bool_)[order] & internal,
                np.where(internal, 0.0, cond.astype(np.float64)), slot, height, feats, zeros)
    return out, float(mean[0])


def _subtree(tree: _Tree, q: int) -> tuple[list[int], list[tuple[int, list[tuple[int, int, int]]]], list[int]]:
    """Return q's subtree: its internal nodes, its leaves with their paths from q as
    ``(j, goes_right, slot)`` steps (``j`` indexes the internal nodes), and its features U
    (q's path features first)."""
    d = len(tree.path_feats[q])
    sub: list[int] = []
    leaves: list[tuple[int, list[tuple[int, int, int]]]] = []
    queue: list[tuple[int, list[tuple[int, int, int]]]] = [(q, [])]
    while queue:
        node, path = queue.pop(0)
        if tree.left[node] < 0:
            leaves.append((node, path))
            continue
        j = len(sub)
        sub.append(node)
        s = int(tree.slot[node])
        queue.append((int(tree.left[node]), [*path, (j, 0, s)]))
        queue.append((int(tree.right[node]), [*path, (j, 1, s)]))
    features = list(tree.path_feats[q])
    for leaf, _ in leaves:
        features.extend(f for f in tree.path_feats[leaf][d:] if f not in features)
    return sub, leaves, features


def _frontier_table(tree: _Tree, q: int, sub: list[int], leaves: list[tuple[int, list[tuple[int, int, int]]]],
                    features: list[int], leaf_table: dict[int, np.ndarray]) -> np.ndarray:
    """Return q's table, shape ``(2**d * 2**m, len(features))``: row ``cold << m | bits`` sums
    the leaf-table rows its leaves take for cold path mask ``cold`` and subtree decisions
    ``bits`` (bit j set when the row goes right at internal node j)."""
    d, m = len(tree.path_feats[q]), len(sub)
    codes = np.arange((1 << d) << m, dtype=np.int64)
    cold_q, bits = codes >> m, codes & ((1 << m) - 1)
    out = np.zeros((len(codes), len(features)), dtype=np.float64)
    for leaf, path in leaves:
        table = leaf_table.get(tree.base + leaf)
        if table is None:  # no path features: the leaf's value is all bias
            continue
        cold = cold_q.copy()
        for j, goes_right, s in path:
            cold |= (((bits >> j) & 1) != goes_right).astype(np.int64) << s
        position = [features.index(f) for f in tree.path_feats[leaf]]
        out[:, position] += table[cold]
    return out


def _frontiers(tree: _Tree, height: int) -> list[int]:
    """Return the tree's frontier nodes: subtrees of at most ``height`` under a taller parent."""
    if tree.height[0] <= height:
        return [0]
    out = []
    for i in np.flatnonzero(tree.height > height):
        out.extend(c for c in (int(tree.left[i]), int(tree.right[i])) if tree.height[c] <= height)
    return out


def forest_from_json(model: dict[str, Any]) -> Forest:
    """Return the :class:`Forest` of a booster saved as JSON (``json.loads(save_raw("json"))``).

    Raises
    ------
    Unsupported
        A model this kernel does not implement (see the module docstring).
    """
    learner = model["learner"]
    params = learner["learner_model_param"]
    if int(params.get("num_class", 0)) > 1 or int(params.get("num_target", 1)) > 1:
        raise Unsupported("several outputs (multi-class or multi-target)")
    booster = learner["gradient_booster"]
    if booster["name"] != "gbtree":
        raise Unsupported(f"booster {booster['name']}")
    bias = _base_margin(learner)
    n_features = int(params["num_feature"])

    trees: list[_Tree] = []
    base = 0
    for raw in booster["model"]["trees"]:
        tree, mean = _read_tree(raw, n_features, base)
        trees.append(tree)
        bias += mean
        base += len(tree.left)

    # Leaf tables (the kernel's intermediate): one row per mask of cold path features.
    leaves, depth, feat_start, zeros, values, table_start = [], [], [], [], [], []
    entries = 0
    for tree in trees:
        for i in np.flatnonzero(tree.left < 0):
            d = len(tree.path_feats[i])
            if d == 0:
                continue
            if d > MAX_UNIQUE_DEPTH:
                raise Unsupported(f"a leaf with {d} distinct features on its path (limit {MAX_UNIQUE_DEPTH})")
            leaves.append(tree.base + int(i))
            depth.append(d)
            feat_start.append(len(zeros))
            zeros.extend(tree.path_zeros[i])
            values.append(float(tree.value[i]))
            table_start.append(entries)
            entries += (1 << d) * d
            if entries > MAX_TABLE_ENTRIES:
                raise Unsupported(f"lookup tables over {MAX_TABLE_ENTRIES} values (trees too deep)")
    flat = np.zeros(0)
    if leaves:
        with _RUN_LOCK:
            flat = _leaf_tables(np.asarray(depth, dtype=np.int64), np.asarray(feat_start, dtype=np.int64),
                                np.asarray(zeros, dtype=np.float64), np.asarray(values, dtype=np.float64),
                                np.asarray(table_start, dtype=np.int64), entries)
    leaf_table: dict[int, np.ndarray] = {
        g: flat[ts:ts + (1 << d) * d].reshape(1 << d, d) for g, d, ts in zip(leaves, depth, table_start)
    }

    # The tallest frontier whose tables stay within the budget (height 0: the leaf tables).
    for height in range(FRONTIER_HEIGHT, -1, -1):
        plan = [[(q, *_subtree(tree, q)) for q in _frontiers(tree, height)] for tree in trees]
        size = sum(((1 << len(tree.path_feats[q])) << len(sub)) * len(feats)
                   for tree, fronts in zip(trees, plan) for q, sub, _, feats in fronts)
        if size <= MAX_TABLE_ENTRIES:
            break
    n_nodes = base
    role = np.full(n_nodes, 2, dtype=np.int8)
    sub_start = np.zeros(n_nodes, dtype=np.int64)
    sub_count = np.zeros(n_nodes, dtype=np.int64)
    fr_width = np.zeros(n_nodes, dtype=np.int64)
    fr_feat_start = np.zeros(n_nodes, dtype=np.int64)
    fr_table_start = np.zeros(n_nodes, dtype=np.int64)
    sub_nodes: list[int] = []
    fr_feat: list[int] = []
    fr_tables: list[np.ndarray] = []
    fr_entries = 0
    for tree, fronts in zip(trees, plan):
        role[tree.base + np.flatnonzero(tree.height > height)] = 0
        for q, sub, below, features in fronts:
            table = _frontier_table(tree, q, sub, below, features, leaf_table)
            g = tree.base + q
            role[g] = 1
            sub_start[g], sub_count[g] = len(sub_nodes), len(sub)
            sub_nodes.extend(sub)
            fr_width[g], fr_feat_start[g], fr_table_start[g] = len(features), len(fr_feat), fr_entries
            fr_feat.extend(features)
            fr_tables.append(table.ravel())
            fr_entries += table.size
    return Forest(
        n_features=n_features,
        tree_start=np.asarray([t.base for t in trees] + [n_nodes], dtype=np.int64),
        role=role,
        feature=_cat([t.feature for t in trees], np.int64),
        threshold=_cat([t.threshold for t in trees], np.float32),
        default_left=_cat([t.default_left for t in trees], np.bool_),
        left=_cat([t.left for t in trees], np.int64),
        right=_cat([t.right for t in trees], np.int64),
        slot=_cat([t.slot for t in trees], np.int64),
        sub_start=sub_start,
        sub_count=sub_count,
        sub_nodes=np.asarray(sub_nodes, dtype=np.int64),
        fr_width=fr_width,
        fr_feat_start=fr_feat_start,
        fr_feat=np.asarray(fr_feat, dtype=np.int64),
        fr_table_start=fr_table_start,
        fr_table=_cat(fr_tables, np.float64),
        bias=bias,
    )


def _cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)


# --- the compiled kernels -----------------------------------------------------------------------
def _compiled(parallel: bool = False):
    """``numba.njit`` with an on-disk cache; without a writable cache directory numba refuses
    ``cache=True``, and the kernels are then compiled once per process instead."""

    def wrap(func):
        try:
            return njit(cache=True, nogil=True, parallel=parallel)(func)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return njit(nogil=True, parallel=parallel)(func)

    return wrap


@_compiled()
def _extend(pz, po, pw, depth, zero, one):  # pragma: no cover - compiled
    """TreeSHAP's EXTEND: add element ``depth`` (zero/one fractions) to the path weights."""
    pz[depth] = zero
    po[depth] = one
    pw[depth] = 1.0 if depth == 0 else 0.0
    for i in range(depth - 1, -1, -1):
        pw[i + 1] += one * pw[i] * (i + 1) / (depth + 1)
        pw[i] = zero * pw[i] * (depth - i) / (depth + 1)


@_compiled()
def _unwound_sum(pz, po, pw, depth, index):  # pragma: no cover - compiled
    """TreeSHAP's UNWIND summed: the total path weight with element ``index`` taken out."""
    one = po[index]
    zero = pz[index]
    next_one = pw[depth]
    total = 0.0
    for i in range(depth - 1, -1, -1):
        if one != 0.0:
            tmp = next_one * (depth + 1) / ((i + 1) * one)
            total += tmp
            next_one = pw[i] - tmp * zero * ((depth - i) / (depth + 1))
        elif zero != 0.0:
            total += (pw[i] / zero) / ((depth - i) / (depth + 1))
    return total


@_compiled(parallel=True)
def _leaf_tables(depth, feat_start, zeros, values, table_start, entries):  # pragma: no cover - compiled
    """Return each leaf's table: for every mask of cold path features, the value the leaf adds
    to each path feature (TreeSHAP's EXTEND over the path, then UNWIND per feature)."""
    table = np.zeros(entries, dtype=np.float64)
    for j in prange(depth.shape[0]):
        d = depth[j]
        fs = feat_start[j]
        pz = np.empty(d + 1)
        po = np.empty(d + 1)
        pw = np.empty(d + 1)
        for cold in range(1 << d):
            _extend(pz, po, pw, 0, 1.0, 1.0)  # the root's dummy element, as in xgboost
            for k in range(d):
                one = 0.0 if (cold >> k) & 1 else 1.0
                _extend(pz, po, pw, k + 1, zeros[fs + k], one)
            base = table_start[j] + cold * d
            for k in range(d):
                w = _unwound_sum(pz, po, pw, d, k + 1)
                table[base + k] = w * (po[k + 1] - pz[k + 1]) * values[j]
    return table


@_compiled(parallel=True)
def _contributions(xt, tree_start, role, feature, threshold, default_left, left, right, slot, sub_start,
                   sub_count, sub_nodes, fr_width, fr_feat_start, fr_feat, fr_table_start, fr_table,
                   block, out):  # pragma: no cover - compiled
    """Add every tree's frontier-table values for the rows (columns of ``xt``) into ``out``.

    ``xt`` is features x rows and ``out`` is (features + 1) x rows, so that the inner loops
    run over contiguous rows without branches.  Blocks of ``block`` rows run in parallel; per
    tree the nodes are visited parents first, carrying each row's mask of cold path features
    down to the frontier, where the subtree's decisions complete the table index.
    """
    n = xt.shape[1]
    n_trees = tree_start.shape[0] - 1
    widest = 1
    for t in range(n_trees):
        widest = max(widest, tree_start[t + 1] - tree_start[t])
    n_blocks = (n + block - 1) // block
    for b in prange(n_blocks):
        lo = b * block
        nb = min(n, lo + block) - lo
        cold = np.zeros((widest, nb), dtype=np.int32)
        code = np.zeros(nb, dtype=np.int32)
        for t in range(n_trees):
            s = tree_start[t]
            for i in range(tree_start[t + 1] - s):
                g = s + i
                kind = role[g]
                if kind == 2:
                    continue
                c = cold[i]
                if kind == 1:
                    m = sub_count[g]
                    for r in range(nb):
                        code[r] = c[r] << m
                    for j in range(m):
                        p = s + sub_nodes[sub_start[g] + j]
                        v = xt[feature[p], lo:lo + nb]
                        thr = threshold[p]
                        dl = default_left[p]
                        bit = np.int32(1) << np.int32(j)
                        for r in range(nb):
                            x = v[r]
                            go_left = (x < thr) or (dl and x != x)
                            code[r] |= 0 if go_left else bit
                    w = fr_width[g]
                    at = fr_table_start[g]
                    fs = fr_feat_start[g]
                    for u in range(w):
                        row = out[fr_feat[fs + u], lo:lo + nb]
                        for r in range(nb):
                            row[r] += fr_table[at + code[r] * w + u]
                else:
                    v = xt[feature[g], lo:lo + nb]
                    thr = threshold[g]
                    dl = default_left[g]
                    bit = np.int32(1) << np.int32(slot[g])
                    cl = cold[left[g]]
                    cr = cold[right[g]]
                    for r in range(nb):
                        x = v[r]
                        go_left = (x < thr) or (dl and x != x)
                        cl[r] = c[r] | (0 if go_left else bit)
                        cr[r] = c[r] | (bit if go_left else 0)


#: numba's default threading layer must not be entered by two threads of a process at once
#: (e.g. an in-process Dask cluster): kernel calls take turns.
_RUN_LOCK = threading.Lock()


def contributions(forest: Forest, x: np.ndarray) -> np.ndarray:
    """Return the SHAP values of rows ``x``: shape (n, n_features + 1), bias last, float64.

    ``x`` is converted to float32 (as xgboost's DMatrix does); NaN is missing.
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != forest.n_features:
        raise ValueError(f"expected {forest.n_features} feature columns, got shape {x.shape}")
    xt = np.ascontiguousarray(x.T, dtype=np.float32)
    out = np.zeros((forest.n_features + 1, x.shape[0]), dtype=np.float64)
    if x.shape[0]:
        with _RUN_LOCK:
            _contributions(xt, forest.tree_start, forest.role, forest.feature, forest.threshold,
                           forest.default_left, forest.left, forest.right, forest.slot, forest.sub_start,
                           forest.sub_count, forest.sub_nodes, forest.fr_width, forest.fr_feat_start,
                           forest.fr_feat, forest.fr_table_start, forest.fr_table, _BLOCK, out)
    out[-1] = forest.bias
    return out.T


# --- a cache per booster ------------------------------------------------------------------------
_FORESTS: OrderedDict[bytes, Forest | Unsupported] = OrderedDict()
_FORESTS_LOCK = threading.Lock()
#: Boosters whose forests are kept (a scoring run uses one; chunks and partitions reuse it).
_FORESTS_KEEP = 4


def forest(booster: Any) -> Forest:
    """Return the :class:`Forest` of an xgboost Booster, reusing it for the same trees.

    The trees are read from ``booster.save_raw("json")``; the same bytes give the same forest,
    so chunks of one scoring run (or copies of the booster) build it once.

    Raises
    ------
    Unsupported
        A model the kernel does not implement.
    """
    raw = bytes(booster.save_raw("json"))
    key = hashlib.sha256(raw).digest()
    with _FORESTS_LOCK:
        built = _FORESTS.get(key)
        if built is not None:
            _FORESTS.move_to_end(key)
    if built is None:
        try:
            built = forest_from_json(json.loads(raw))
        except Unsupported as exc:
            built = exc
        with _FORESTS_LOCK:
            _FORESTS[key] = built
            while len(_FORESTS) > _FORESTS_KEEP:
                _FORESTS.popitem(last=False)
    if isinstance(built, Unsupported):
        raise built
    return built


def booster_contributions(booster: Any, x: np.ndarray) -> np.ndarray | None:
    """Return the exact SHAP values of rows ``x`` under ``booster`` (bias last), or None.

    None when the kernel does not handle this booster; one log line per call says why, and
    the caller uses xgboost's ``pred_contribs`` instead.
    """
    try:
        trees = forest(booster)
    except Unsupported as exc:
        log.info("score    exact contributions computed by xgboost (the compiled kernel does not handle %s)", exc)
        return None
    if x.shape[1] != trees.n_features:
        log.info("score    exact contributions computed by xgboost (%d feature columns, the booster has %d)",
                 x.shape[1], trees.n_features)
        return None
    return contributions(trees, x)
