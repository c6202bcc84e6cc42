"""Allocation for splits: how many rows of each class go to each part, and which rows.

``round_matrix`` turns exact shares (class size × ratio) into whole counts that keep every
class's total and put every part within a row of its size; ``deal`` hands rows to parts to
match such counts; ``place_groups`` keeps groups whole; ``iterative_stratification`` deals
multi-label rows. Everything here works on NumPy codes and counts, not on frames: the
caller, :func:`prodml.data.split.split`, encodes the data and decides the ratios.
"""

from __future__ import annotations

import numpy as np

# n × ratio this close to a whole number is that number (0.6 × 30 is 18, not 17.999...); the
# relative part covers sums of many such products, whose float error grows with their size.
_SNAP_ABSOLUTE, _SNAP_RELATIVE = 1e-9, 1e-12


# -- counts -----------------------------------------------------------------------------------

def _snap(x: np.ndarray) -> np.ndarray:
    whole = np.rint(x)
    return np.where(np.abs(x - whole) < _SNAP_ABSOLUTE + _SNAP_RELATIVE * np.abs(x), whole, x)


def round_matrix(share: np.ndarray) -> np.ndarray:
    """Round a (classes × parts) matrix whose rows sum to whole numbers (controlled rounding).

    Every entry becomes its floor or its ceiling and every row keeps its sum: a class's
    leftover rows go to the parts with the largest remainders (largest remainder method).
    Where that leaves a column sum (a part's size) off the floor or ceiling of its exact sum,
    units are moved between parts along the cheapest augmenting paths, cheapest meaning the
    smallest rise in ``sum(error ** 8)`` over entries (a min-cost flow): every entry stays
    within one row of exact, and the power puts the largest errors first.

    >>> share = np.array([[7], [3]]) * np.array([[0.6, 0.2, 0.2]])  # 7 and 3 rows, 60/20/20
    >>> counts = round_matrix(share)
    >>> counts.tolist(), counts.sum(1).tolist(), counts.sum(0).tolist()
    ([[4, 1, 2], [2, 1, 0]], [7, 3], [6, 2, 2])
    """
    share = _snap(share)
    base = np.floor(share)
    remainder = share - base
    units = np.rint(remainder.sum(1)).astype(np.int64)
    # what rounding an entry up costs over rounding it down; entries already whole stay
    up_cost = np.where(remainder > 0, (1 - remainder) ** 8 - remainder ** 8, np.inf)
    order = np.argsort(up_cost, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(share.shape[1])[None, :], axis=1)
    extra = rank < units[:, None]
    exact = _snap(share.sum(0))
    _settle_columns(extra, up_cost, base.sum(0) + extra.sum(0), np.floor(exact), np.ceil(exact))
    return (base + extra).astype(np.int64)


def _settle_columns(extra: np.ndarray, up_cost: np.ndarray, totals: np.ndarray,
                    low: np.ndarray, high: np.ndarray) -> None:
    """Successive shortest paths: from the per-row optimum, move units until every column
    total is in [low, high]. Such a rounding exists (the exact matrix is a fractional one of
    the same flow problem), so a path is always found; a path carries as many units as its
    cheapest moves allow, so the loop runs a handful of times, not once per unit."""
    parts = extra.shape[1]
    while True:
        over, under = np.flatnonzero(totals > high), np.flatnonzero(totals < low)
        if over.size:
            sources, sinks = over[:1], np.flatnonzero(totals < high)
            slack_of = lambda s, t: min(totals[s] - high[s], high[t] - totals[t])  # noqa: E731
        elif under.size:
            sources, sinks = np.flatnonzero(totals > low), under[:1]
            slack_of = lambda s, t: min(totals[s] - low[s], low[t] - totals[t])  # noqa: E731
        else:
            return
        # moves[k][j]: the classes that could carry a unit from part k to part j most cheaply
        cost = np.full((parts, parts), np.inf)
        moves: dict[tuple[int, int], np.ndarray] = {}
        for k in range(parts):
            for j in range(parts):
                able = np.flatnonzero(extra[:, k] & ~extra[:, j] & np.isfinite(up_cost[:, j]))
                if k != j and able.size:
                    rise = up_cost[able, j] - up_cost[able, k]
                    cost[k, j] = rise.min()
                    moves[k, j] = able[rise <= cost[k, j] + 1e-9]
        distance = np.full(parts, np.inf)
        distance[sources] = 0.0
        previous = np.full(parts, -1)
        for _ in range(parts - 1):  # Bellman-Ford: costs may be negative, cycles never are
            through = distance[:, None] + cost
            best = through.argmin(0)
            shortest = through[best, np.arange(parts)]
            better = shortest < distance - 1e-12
            if not better.any():
                break
            distance[better], previous[better] = shortest[better], best[better]
        if not np.isfinite(distance[sinks]).any():
            return  # cannot happen (see above); rows stay exact even so
        node = int(sinks[np.argmin(distance[sinks])])
        path = [node]
        while previous[path[-1]] != -1:
            path.append(int(previous[path[-1]]))
        path.reverse()
        steps = list(zip(path, path[1:]))
        amount = int(min(slack_of(path[0], path[-1]), *(moves[step].size for step in steps)))
        for k, j in steps:
            carried = moves[k, j][:amount]
            extra[carried, k], extra[carried, j] = False, True
        totals[path[0]] -= amount
        totals[path[-1]] += amount


def _fill(owed: np.ndarray, totals: np.ndarray, open_parts: np.ndarray) -> np.ndarray:
    """Share ``totals[c]`` units of each row over the open parts by need: the parts most owed
    fill first, down to a common level (Euclidean projection of ``owed`` onto the simplex
    scaled to ``totals``); parts already over their due get nothing."""
    owed = np.where(open_parts, owed, -1e12)
    ranked = -np.sort(-owed, axis=1)
    cumulative = np.cumsum(ranked, axis=1)
    steps = np.arange(1, owed.shape[1] + 1)
    fits = ranked - (cumulative - totals[:, None]) / steps > 0
    last = owed.shape[1] - np.argmax(fits[:, ::-1], axis=1)
    level = (cumulative[np.arange(owed.shape[0]), last - 1] - totals) / last
    share = np.maximum(owed - level[:, None], 0)
    share[totals == 0] = 0
    return share


# -- placing rows -----------------------------------------------------------------------------

def deal(codes: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The part of each row, given how many rows of each class go to each part.

    Rows are taken within each class in an order drawn from ``rng``.

    >>> codes = np.array([0, 0, 0, 1, 1, 1])  # the class of each row
    >>> part = deal(codes, np.array([[2, 1], [1, 2]]), np.random.default_rng(0))
    >>> [np.bincount(part[codes == c], minlength=2).tolist() for c in (0, 1)]
    [[2, 1], [1, 2]]
    """
    n = codes.size
    order = rng.permutation(n)
    order = order[np.argsort(codes[order], kind="stable")]
    ordered = codes[order]
    starts = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=counts.shape[0]))])
    rank = np.arange(n) - starts[ordered]
    bounds = np.cumsum(counts, axis=1)
    part_of_ordered = np.zeros(n, dtype=np.int64)
    for k in range(counts.shape[1] - 1):
        part_of_ordered += rank >= bounds[ordered, k]
    part = np.empty(n, dtype=np.int64)
    part[order] = part_of_ordered
    return part


def place_groups(group_of: np.ndarray, rows: np.ndarray, classes: np.ndarray,
                 num_classes: int, ratio: np.ndarray, rng: np.random.Generator, *,
                 single_label: bool) -> np.ndarray:
    """Give each group one part: largest groups first, each to the part where it least raises
    sum((count - target)^2 / class size) + (size - target size)^2 / rows, a chi-square-like
    distance from the targets. Groups of one row (single label) skip the search: they are dealt
    per class, like ungrouped rows, to fill what each part is still owed.

    ``rows`` and ``classes`` pair rows with their classes (a row appears once per label set in
    a multi-label split); the result is the part of every row of ``group_of``.

    >>> group_of = np.array([0, 0, 1, 1, 2, 3, 4, 4])  # e.g. the user of each row
    >>> label = np.array([0, 1, 0, 0, 1, 0, 1, 1])
    >>> part = place_groups(group_of, np.arange(8), label, 2, np.array([0.75, 0.25]),
    ...                     np.random.default_rng(0), single_label=True)
    >>> all(np.unique(part[group_of == g]).size == 1 for g in range(5)), np.bincount(part).tolist()
    (True, [6, 2])
    """
    n, parts = group_of.size, ratio.size
    num_groups = int(group_of.max()) + 1
    sizes = np.bincount(group_of, minlength=num_groups)
    keys, pair_counts = np.unique(group_of[rows] * num_classes + classes, return_counts=True)
    pair_group, pair_class = np.divmod(keys, num_classes)
    starts = np.searchsorted(pair_group, np.arange(num_groups + 1)).tolist()
    class_sizes = np.bincount(classes, minlength=num_classes)
    target = ratio[:, None] * class_sizes[None, :]
    # Placing counts v in part k changes the distance by sum(v * (2 * gap + v) / class size):
    # only sum(v / class size * gap) differs between parts, so that is the score to minimise.
    weights = (pair_counts / np.maximum(class_sizes, 1)[pair_class]).tolist()
    pair_class_list = pair_class.tolist()
    gap = (-target).tolist()  # have - target, per part and class
    rows_gap = (-ratio).tolist()  # (rows - target rows) / n, per part
    open_parts = np.flatnonzero(ratio > 0).tolist()
    order = np.lexsort((rng.random(num_groups), -sizes))
    if single_label:
        order = order[sizes[order] > 1]
    part_of_group = np.full(num_groups, -1, dtype=np.int64)
    size_list = sizes.tolist()
    for g in order.tolist():  # one step per group of two or more rows, in plain Python: the
        lo, hi = starts[g], starts[g + 1]  # arrays are too small for NumPy to pay off
        size, cls, weight = size_list[g], pair_class_list[lo:hi], weights[lo:hi]
        best, best_score = -1, np.inf
        for k in open_parts:
            row = gap[k]
            score = size * rows_gap[k] + sum(w * row[c] for c, w in zip(cls, weight))
            if score < best_score:
                best, best_score = k, score
        part_of_group[g] = best
        row = gap[best]
        for c, count in zip(cls, pair_counts[lo:hi].tolist()):
            row[c] += count
        rows_gap[best] += size / n
    part = part_of_group[group_of]
    alone = np.flatnonzero(sizes[group_of] == 1) if single_label else np.zeros(0, np.int64)
    if alone.size:
        alone_classes = classes[alone]
        left = np.bincount(alone_classes, minlength=num_classes).astype(np.float64)
        share = _fill(-np.array(gap).T, left, np.broadcast_to(ratio > 0, (num_classes, parts)))
        part[alone] = deal(alone_classes, round_matrix(share), rng)
    return part


def iterative_stratification(flags: np.ndarray, ratio: np.ndarray,
                             rng: np.random.Generator) -> np.ndarray:
    """Iterative stratification (Sechidis et al., 2011), one label at a time: the label with
    the fewest rows left goes first, and all its rows left are dealt at once to the parts
    that still want the most of it; rows with no label fill the parts' sizes last.

    >>> flags = np.array([[1, 0], [1, 1], [0, 1], [1, 0], [0, 0], [0, 1], [1, 1], [0, 0]],
    ...                  dtype=bool)  # rows × labels
    >>> part = iterative_stratification(flags, np.array([0.5, 0.5]), np.random.default_rng(0))
    >>> [flags[part == k].sum(0).tolist() for k in (0, 1)], np.bincount(part).tolist()
    ([[2, 2], [2, 2]], [4, 4])
    """
    n, num_labels = flags.shape
    parts = ratio.size
    wanted = ratio[:, None] * flags.sum(0)[None, :]
    wanted_rows = ratio * n
    open_parts = (ratio > 0)[None, :]
    key = rng.permutation(n)
    part = np.full(n, -1, dtype=np.int64)
    left = np.ones(n, dtype=bool)
    left_per_label = flags.sum(0)
    for _ in range(num_labels):  # one step per label
        live = np.flatnonzero(left_per_label > 0)
        if not live.size:
            break
        j = live[np.argmin(left_per_label[live])]
        rows = np.flatnonzero(flags[:, j] & left)
        rows = rows[np.argsort(key[rows])]
        counts = round_matrix(_fill(wanted[:, j][None, :], np.array([float(rows.size)]),
                                     open_parts))[0]
        chosen = np.repeat(np.arange(parts), counts)
        part[rows] = chosen
        left[rows] = False
        for k in range(parts):
            taken = flags[rows[chosen == k]].sum(0)
            wanted[k] -= taken
            left_per_label -= taken
        wanted_rows -= counts
    rest = np.flatnonzero(left)
    if rest.size:
        counts = round_matrix(_fill(wanted_rows[None, :], np.array([float(rest.size)]),
                                     open_parts))
        part[rest] = deal(np.zeros(rest.size, dtype=np.int64), counts, rng)
    return part
