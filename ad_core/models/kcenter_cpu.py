"""Exact greedy k-center (furthest-point) selection on the CPU, with triangle-inequality pruning.

Why hand-written: the study's coreset is the plain greedy rule (each step adds the point
furthest from the points chosen so far), which anomalib's ``KCenterGreedy`` runs as one
full (N, d) pass per step.  No maintained library does that rule exactly, seeded, in 128
dims (fpsample's FPS is limited to 8 dims); at the study's sizes the full passes take tens
of minutes on a laptop CPU.  This kernel returns the same indices while reading a small
part of the data per step.

Bookkeeping: every point belongs to the cluster of its nearest chosen centre; a cluster's
members sit in one contiguous segment of a pool, sorted by distance to their centre
(descending, then point index).  Members only ever leave a cluster (a new centre steals
them), so a segment stays sorted without re-sorting, its first entry is the cluster's
furthest point, and the next centre is the best first entry over clusters.

Pruning, with ``c`` the new centre, ``a`` a cluster's centre, ``r(x)`` a member's distance
to ``a`` and ``R`` the cluster's radius (all exact bounds, so nothing is approximated):
- a cluster is skipped when ``|c - a| >= 2R``: then ``|x - c| >= |c - a| - r(x) >= r(x)``;
- inside a cluster only the sorted prefix with ``|c - a| < 2 r(x)`` can move;
- a member of that prefix is skipped when a lower bound of ``|x - c|`` on a k-dim
  orthonormal projection (PCA of the data, a float32 copy next to the member) is already
  ``>= r(x)``; the member's threshold for that test is precomputed with the rounding
  bounds of the copy and of float32 arithmetic.
Only the remaining members get the exact distance.  Distances are squared L2 summed in
float64 from the float32 inputs; a relative slack of 1e-9 keeps every skip decision on the
safe side.  Where the bounds stop paying (unstructured data), ``KCenterState.switch_to_dense``
continues with plain full passes: the same rule and the same sums.
"""

from __future__ import annotations

import numpy as np
from numba import get_num_threads, get_thread_id, njit, prange

# Reassociation lets LLVM vectorise the sums; the result is deterministic for a given CPU,
# and a different vector width can only move a distance by ~1e-16 relative.
_FASTMATH = {"reassoc", "contract", "nsz"}
_SLACK = 1.0 + 1e-9
_F32_SUM = 1.0 + 1e-5  # float32 sum of k <= 64 squared differences: relative error < (k + 3) 2^-24


@njit(cache=True, fastmath=_FASTMATH)
def _d2(a: np.ndarray, i: int, b: np.ndarray, j: int) -> float:
    """Squared L2 distance between rows a[i] and b[j], summed in float64."""
    s = 0.0
    for t in range(a.shape[1]):
        diff = np.float64(a[i, t]) - np.float64(b[j, t])
        s += diff * diff
    return s


@njit(cache=True, fastmath=_FASTMATH)
def _d2_f32(a: np.ndarray, i: int, b: np.ndarray, j: int) -> np.float32:
    """Squared L2 distance between float32 rows, in float32 (the bound test only)."""
    s = np.float32(0.0)
    for t in range(a.shape[1]):
        diff = a[i, t] - b[j, t]
        s += diff * diff
    return s


@njit(cache=True)
def _threshold(m2: float, zerr: float) -> np.float32:
    """The float32 projected squared distance at or above which a member cannot move."""
    r = np.sqrt(m2 * _SLACK) + zerr
    return np.float32(_F32_SUM * r * r * (1.0 + 2.0**-22))  # rounded to float32 upwards


@njit(cache=True)
def _sorted_desc(idx: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """Order of (idx, d2) by d2 descending, then idx ascending."""
    by_index = np.argsort(idx, kind="mergesort")
    return by_index[np.argsort(-d2[by_index], kind="mergesort")]


@njit(cache=True)
def _first_cluster(x, z, zerr, start, pool_i, pool_d, pool_t, pool_z):
    """Put every point in the cluster of ``start``; return the pool entries used (n)."""
    n = x.shape[0]
    d2 = np.empty(n)
    for i in range(n):
        d2[i] = _d2(x, i, x, start)
    order = _sorted_desc(np.arange(n), d2)
    for t in range(n):
        i = order[t]
        pool_i[t] = i
        pool_d[t] = d2[i]
        pool_t[t] = _threshold(d2[i], zerr)
        pool_z[t] = z[i]
    return n


@njit(cache=True)
def _compact(pool_i, pool_d, pool_t, pool_z, seg_lo, seg_hi, n_clusters):
    """Drop the dead entries (members that moved away); segments keep their order."""
    w = 0
    for j in range(n_clusters):  # segments lie in cluster order in the pool
        lo, hi = seg_lo[j], seg_hi[j]
        for u in range(lo, hi):
            pool_i[w + u - lo] = pool_i[u]
            pool_d[w + u - lo] = pool_d[u]
            pool_t[w + u - lo] = pool_t[u]
            pool_z[w + u - lo] = pool_z[u]
        seg_lo[j] = w
        seg_hi[j] = w + hi - lo
        w += hi - lo
    return w


# The kernel's state travels as tuples of arrays (numba passes them by reference):
#   pool     = (pool_i, pool_d, pool_t, pool_z): per entry, point index, squared distance to
#              its centre, bound threshold, projected copy (k float32)
#   clusters = (seg_lo, seg_hi, radius2, far): per cluster, its pool segment, squared radius,
#              furthest member
#   centres  = (xc, zc, selected): per chosen centre, its full and projected rows, point index
#   scratch  = (mover_i, mover_d, mover_n, cand, exact_n): per-thread buffers of one step


@njit(cache=True)
def _next_centre(radius2: np.ndarray, far: np.ndarray, n_clusters: int) -> int:
    """The furthest first entry over clusters: the largest radius, the lowest point index on ties."""
    best, p = -1.0, -1
    for j in range(n_clusters):
        r2 = radius2[j]
        if r2 > best or (r2 == best and far[j] < p):
            best, p = r2, far[j]
    return p


@njit(cache=True)
def _candidates(j, step, zerr, pool, clusters, centres, cand, tid):
    """Pool positions of cluster ``j`` that may move to centre ``step`` (into ``cand[tid]``); their count.

    The cluster is skipped when ``|c - a| >= 2R`` (projected lower bound first, then exact);
    inside, only the sorted prefix with ``|c - a| < 2 r(x)`` is read, and of that only the
    members whose float32 projected distance is below their precomputed threshold remain.
    """
    pool_d, pool_t, pool_z = pool[1], pool[2], pool[3]
    seg_lo, seg_hi, radius2 = clusters[0], clusters[1], clusters[2]
    xc, zc = centres[0], centres[1]
    r2 = radius2[j]
    if r2 <= 0.0:  # empty, or every member sits on its centre
        return 0
    limit = 4.0 * r2 * _SLACK
    lower = np.sqrt(_d2(zc, step, zc, j)) - zerr
    if lower > 0.0 and lower * lower >= limit:
        return 0
    cc2 = _d2(xc, step, xc, j)
    if cc2 >= limit:
        return 0
    lo, hi = seg_lo[j], seg_hi[j]
    stop = lo
    while stop < hi and cc2 < 4.0 * pool_d[stop] * _SLACK:
        stop += 1
    n_cand = 0
    for u in range(lo, stop):  # the hot loop
        if _d2_f32(pool_z, u, zc, step) < pool_t[u]:
            cand[tid, n_cand] = u
            n_cand += 1
    return n_cand


@njit(cache=True)
def _take_movers(j, step, n_cand, x, pool, clusters, centres, scratch, tid):
    """Exact distances of the candidates; members closer to the new centre leave cluster ``j``.

    Movers go to this thread's ``mover_*`` row; the kept members are packed towards the end of
    the prefix (order kept), and the cluster's start, radius and furthest member are updated.
    """
    pool_i, pool_d, pool_t, pool_z = pool
    seg_lo, seg_hi, radius2, far = clusters
    xc = centres[0]
    mover_i, mover_d, mover_n, cand = scratch[0], scratch[1], scratch[2], scratch[3]
    n_here = 0
    for c in range(n_cand):
        u = cand[tid, c]
        d2 = _d2(x, pool_i[u], xc, step)
        if d2 < pool_d[u]:
            mover_i[tid, mover_n[tid]] = pool_i[u]
            mover_d[tid, mover_n[tid]] = d2
            mover_n[tid] += 1
            cand[tid, n_here] = u  # pool positions of this cluster's movers, ascending
            n_here += 1
    if n_here == 0:
        return
    lo, hi = seg_lo[j], seg_hi[j]
    last = cand[tid, n_here - 1]
    keep = last + 1
    k = n_here - 1
    for u in range(last, lo - 1, -1):
        if k >= 0 and cand[tid, k] == u:
            k -= 1
            continue
        keep -= 1
        if keep != u:
            pool_i[keep] = pool_i[u]
            pool_d[keep] = pool_d[u]
            pool_t[keep] = pool_t[u]
            pool_z[keep] = pool_z[u]
    seg_lo[j] = keep
    if keep < hi:
        radius2[j] = pool_d[keep]
        far[j] = pool_i[keep]
    else:
        radius2[j] = -1.0


@njit(cache=True)
def _open_cluster(step, used, z, zerr, pool, clusters, scratch):
    """The movers of all threads, sorted, become cluster ``step``'s segment; return the entries in use."""
    pool_i, pool_d, pool_t, pool_z = pool
    seg_lo, seg_hi, radius2, far = clusters
    mover_i, mover_d, mover_n = scratch[0], scratch[1], scratch[2]
    n_moved = mover_n.sum()
    if used + n_moved > pool_i.shape[0]:
        used = _compact(pool_i, pool_d, pool_t, pool_z, seg_lo, seg_hi, step)
    moved_i = np.empty(n_moved, np.int64)
    moved_d = np.empty(n_moved)
    w = 0
    for t in range(mover_n.shape[0]):
        moved_i[w:w + mover_n[t]] = mover_i[t, :mover_n[t]]
        moved_d[w:w + mover_n[t]] = mover_d[t, :mover_n[t]]
        w += mover_n[t]
    order = _sorted_desc(moved_i, moved_d)  # independent of which thread found which mover
    for t in range(n_moved):
        i = moved_i[order[t]]
        pool_i[used + t] = i
        pool_d[used + t] = moved_d[order[t]]
        pool_t[used + t] = _threshold(moved_d[order[t]], zerr)
        pool_z[used + t] = z[i]
    seg_lo[step], seg_hi[step] = used, used + n_moved
    if n_moved:
        radius2[step], far[step] = pool_d[used], pool_i[used]
    else:
        radius2[step] = -1.0
    return used + n_moved


@njit(cache=True, parallel=True)
def _steps(x, z, zerr, pool, clusters, centres, scratch, used, touched, step_lo, step_hi):
    """Run greedy steps [step_lo, step_hi); return the pool entries in use afterwards.

    The clusters of one step are independent (disjoint segments): they are processed in
    parallel, each thread collecting its movers in its own row of the scratch buffers; the
    movers are then sorted, which makes the result independent of threads.
    ``touched[step]``: how many points got an exact d-dim distance at that step.
    """
    xc, zc, selected = centres
    mover_n, cand, exact_n = scratch[2], scratch[3], scratch[4]
    for step in range(step_lo, step_hi):
        p = _next_centre(clusters[2], clusters[3], step)
        selected[step] = p
        xc[step] = x[p]
        zc[step] = z[p]
        mover_n[:] = 0
        exact_n[:] = 0
        for j in prange(step):
            tid = get_thread_id()
            n_cand = _candidates(j, step, zerr, pool, clusters, centres, cand, tid)
            exact_n[tid] += n_cand
            if n_cand:
                _take_movers(j, step, n_cand, x, pool, clusters, centres, scratch, tid)
        used = _open_cluster(step, used, z, zerr, pool, clusters, scratch)
        touched[step] = exact_n.sum()
    return used


@njit(cache=True, parallel=True)
def _dense_steps(x, min_d2, selected, step_lo, step_hi):
    """The same greedy steps as one full pass each (for data the bounds cannot prune)."""
    n = x.shape[0]
    for step in range(step_lo, step_hi):
        p = np.argmax(min_d2)  # the first index on ties
        selected[step] = p
        for i in prange(n):
            d2 = _d2(x, i, x, p)
            if d2 < min_d2[i]:
                min_d2[i] = d2


@njit(cache=True)
def _min_d2_from_pool(pool_i, pool_d, seg_lo, seg_hi, n_clusters, n):
    """Every point's squared distance to its nearest centre, from the cluster segments."""
    out = np.empty(n)
    for j in range(n_clusters):
        for u in range(seg_lo[j], seg_hi[j]):
            out[pool_i[u]] = pool_d[u]
    return out


class KCenterState:
    """The pool, clusters and chosen centres of one greedy run (all preallocated).

    Memory: a pool of at most 2N entries of (int64, float64, float32, k float32), i.e.
    (20 + 4k) * 2N bytes, per-thread scratch of 24N bytes a thread, and the centres
    (size, d + k) float32.
    """

    def __init__(self, x: np.ndarray, z: np.ndarray, zerr: float, size: int, start: int):
        n, d = x.shape
        k = z.shape[1]
        self.x, self.z, self.zerr, self.size = x, z, float(zerr), size
        cap = 2 * n  # live entries are always n; dead ones are compacted away when full
        self.pool_i = np.empty(cap, np.int64)
        self.pool_d = np.empty(cap)
        self.pool_t = np.empty(cap, np.float32)
        self.pool_z = np.empty((cap, k), np.float32)
        self.seg_lo = np.zeros(size, np.int64)
        self.seg_hi = np.zeros(size, np.int64)
        self.radius2 = np.full(size, -1.0)
        self.far = np.zeros(size, np.int64)
        self.xc = np.empty((size, d), np.float32)
        self.zc = np.empty((size, k), np.float32)
        self.selected = np.empty(size, np.int64)
        threads = get_num_threads()
        self.mover_i = np.empty((threads, n), np.int64)
        self.mover_d = np.empty((threads, n))
        self.mover_n = np.zeros(threads, np.int64)
        self.cand = np.empty((threads, n), np.int64)
        self.exact_n = np.zeros(threads, np.int64)
        self.touched = np.zeros(size, np.int64)
        self.touched[0] = n
        self.used = _first_cluster(x, z, self.zerr, start, self.pool_i, self.pool_d, self.pool_t, self.pool_z)
        self.selected[0], self.xc[0], self.zc[0] = start, x[start], z[start]
        self.seg_lo[0], self.seg_hi[0] = 0, n
        self.radius2[0], self.far[0] = self.pool_d[0], self.pool_i[0]
        self.done = 1
        self.min_d2: np.ndarray | None = None  # set when switched to full passes

    def advance(self, steps: int) -> None:
        """Choose the next ``steps`` centres (fewer at the end)."""
        hi = min(self.size, self.done + steps)
        if self.min_d2 is not None:
            _dense_steps(self.x, self.min_d2, self.selected, self.done, hi)
            self.touched[self.done:hi] = len(self.x)
        else:
            pool = (self.pool_i, self.pool_d, self.pool_t, self.pool_z)
            clusters = (self.seg_lo, self.seg_hi, self.radius2, self.far)
            scratch = (self.mover_i, self.mover_d, self.mover_n, self.cand, self.exact_n)
            self.used = _steps(self.x, self.z, self.zerr, pool, clusters, (self.xc, self.zc, self.selected), scratch,
                               self.used, self.touched, self.done, hi)
        self.done = hi

    def switch_to_dense(self) -> None:
        """Continue with full passes (same rule, same distances); the pool is dropped."""
        if self.min_d2 is None:
            self.min_d2 = _min_d2_from_pool(self.pool_i, self.pool_d, self.seg_lo, self.seg_hi, self.done, len(self.x))
            self.pool_i = self.pool_d = self.pool_t = self.pool_z = self.z = None
