"""Compiled (numba) passes over the customer-sorted order history of :mod:`churnctl.features`.

Each kernel is one loop over the rows in (customer, time) order, with the customer's rows
contiguous: no Python loop per customer or per row.  The kernels give exactly the numbers of
the numpy formulas they replace (same order of additions, same tie rules).  They run on the
calling thread without the GIL (``nogil``), never in parallel themselves, so another thread
can use the second core meanwhile.

This module imports numba; :mod:`churnctl.features` imports it only when a history is built,
so ``import churnctl.api`` stays free of numba.  Compiled code is cached on disk
(``cache=True``), like :mod:`churnctl.treeshap`'s.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Customers with at most this many orders are ordered by time with an insertion sort.
_SMALL = 32


def _compiled(func):
    """``numba.njit`` with an on-disk cache; without a writable cache directory numba refuses
    ``cache=True``, and the kernel is then compiled once per process instead."""
    try:
        return njit(cache=True, nogil=True)(func)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return njit(nogil=True)(func)


@_compiled
def sort_by_group_time(group, time, n_groups):  # pragma: no cover - compiled
    """Return the positions that sort the rows by (``group``, ``time``), stably.

    Equals ``np.lexsort((time, group))``: rows with equal group and time keep their input
    order.  ``group`` holds integers in ``[0, n_groups)``.  A counting sort places each group's
    rows (in input order), then each group's rows are sorted by time.
    """
    n = group.size
    start = np.zeros(n_groups + 1, dtype=np.int64)
    for i in range(n):
        start[group[i] + 1] += 1
    for g in range(n_groups):
        start[g + 1] += start[g]
    fill = start[:-1].copy()
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        g = group[i]
        order[fill[g]] = i
        fill[g] += 1
    for g in range(n_groups):
        lo, hi = start[g], start[g + 1]
        if hi - lo < 2:
            continue
        if hi - lo <= _SMALL:  # stable insertion sort: a row moves only past later times
            for k in range(lo + 1, hi):
                row = order[k]
                t = time[row]
                j = k - 1
                while j >= lo and time[order[j]] > t:
                    order[j + 1] = order[j]
                    j -= 1
                order[j + 1] = row
        else:
            seg = order[lo:hi].copy()
            by_time = np.argsort(time[seg], kind="mergesort")  # mergesort is stable
            for k in range(hi - lo):
                order[lo + k] = seg[by_time[k]]
    return order


@_compiled
def mode_per_group(group, value, n_groups, n_values):  # pragma: no cover - compiled
    """Return each group's most frequent value code, ties to the value seen last; -1 if none.

    ``group`` is sorted (each group's rows contiguous, in time order); ``value`` holds codes in
    ``[0, n_values)``, -1 for missing (never counted).
    """
    out = np.full(n_groups, -1, dtype=np.int64)
    count = np.zeros(n_values, dtype=np.int64)
    latest = np.zeros(n_values, dtype=np.int64)
    n = group.size
    i = 0
    while i < n:
        g = group[i]
        j = i
        while j < n and group[j] == g:
            v = value[j]
            if v >= 0:
                count[v] += 1
                latest[v] = j
            j += 1
        best, best_count, best_latest = -1, 0, -1
        for k in range(i, j):  # each value once (its count is cleared once looked at)
            v = value[k]
            if v >= 0 and count[v] > 0:
                c, last = count[v], latest[v]
                if c > best_count or (c == best_count and last > best_latest):
                    best, best_count, best_latest = v, c, last
                count[v] = 0
        out[g] = best
        i = j
    return out


@_compiled
def median_gap(group, day, n_groups):  # pragma: no cover - compiled
    """Return each group's median of the differences between consecutive ``day`` values.

    ``group`` is sorted and ``day`` ascending within each group.  NaN for a group with fewer
    than two rows; an even count of gaps takes the mean of the two middle ones.
    """
    out = np.full(n_groups, np.nan)
    buf = np.empty(64, dtype=np.int64)
    n = group.size
    i = 0
    while i < n:
        g = group[i]
        j = i + 1
        while j < n and group[j] == g:
            j += 1
        m = j - i - 1  # gaps
        if m > 0:
            if m > buf.size:
                buf = np.empty(2 * m, dtype=np.int64)
            for k in range(m):
                buf[k] = day[i + k + 1] - day[i + k]
            if m <= _SMALL:  # insertion sort in place
                for k in range(1, m):
                    v = buf[k]
                    q = k - 1
                    while q >= 0 and buf[q] > v:
                        buf[q + 1] = buf[q]
                        q -= 1
                    buf[q + 1] = v
                gaps = buf
            else:
                gaps = np.sort(buf[:m])
            out[g] = (np.float64(gaps[(m - 1) // 2]) + np.float64(gaps[m // 2])) / 2
        i = j
    return out


@_compiled
def positive_ranking(values, depth):  # pragma: no cover - compiled
    """Return, per row of ``values``, its columns holding a positive value, largest first: the
    first ``depth`` of them.

    Shape ``(rows, depth)``, padded with -1.  Equal values keep column order, so the ranking
    equals repeated ``np.argmax`` (which takes the first of equal maxima); NaN is not positive.
    With ``depth`` below the number of columns, a value enters the kept ranks only when it is
    larger than the last kept one (an equal, later column ranks after it), so the result is
    the first ``depth`` columns of the full ranking.
    """
    n, m = values.shape
    out = np.full((n, depth), -1, dtype=np.int64)
    if depth == 0:
        return out
    for r in range(n):
        k = 0
        for c in range(m):
            v = values[r, c]
            if v > 0:  # insert after every column with a value >= v (stable)
                if k == depth:
                    if not values[r, out[r, depth - 1]] < v:
                        continue  # ranks after all the kept ones
                    j = depth - 1  # the last kept one drops out
                else:
                    j = k
                    k += 1
                while j > 0 and values[r, out[r, j - 1]] < v:
                    out[r, j] = out[r, j - 1]
                    j -= 1
                out[r, j] = c
    return out


@_compiled
def needs_trim(offsets, data, lead, space):  # pragma: no cover - compiled
    """Return True when some value of a text column may need trimming (``readers.trim``).

    ``offsets`` (n + 1) and ``data`` are the column's Arrow buffers; ``lead`` / ``space`` are
    256-entry tables of the first / last bytes that may begin / end white space.  The same test
    as ``readers.trim``'s numpy one, value by value, stopping at the first hit: a first byte in
    ``lead``, a last byte in ``space``, or a value ending in a multi-byte character whose lead
    byte may start Unicode white space (0xC2; 0xE1-0xE3).  An empty value looks at a
    neighbour's byte, as there: at worst a trim that changes nothing.
    """
    n = offsets.size - 1
    m = data.size
    for i in range(n):
        first = data[min(offsets[i], m - 1)]
        last_at = max(offsets[i + 1] - 1, 0)
        last = data[last_at]
        if lead[first] or space[last]:
            return True
        if last >= 0x80:
            if data[max(last_at - 1, 0)] == 0xC2:
                return True
            b = data[max(last_at - 2, 0)]
            if b == 0xE1 or b == 0xE2 or b == 0xE3:
                return True
    return False
