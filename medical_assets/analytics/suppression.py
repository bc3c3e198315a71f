"""Small-cell suppression of a published aggregate: counts from 1 to a threshold become null.

`suppress` guarantees, for the table it is given and each of its `count_columns`:

- Primary suppression: no count from 1 to `threshold` is published (CMS's cell-size rule, 10 by
  default). Zero stays zero: an empty cell says nothing about anyone.
- Sub-counts: a count that is part of another in the same row (`sub_counts`, e.g. abnormal results
  of all results) is suppressed when it is 1..threshold, when the rest of its whole (whole minus
  part, derivable by subtraction) is 1..threshold, and when its whole is suppressed (a part close
  to its whole would give the whole away).
- Complementary suppression over every margin: `margins` lists the groupings of the rows whose
  group totals may be published (a two-way table such as facility x month has two: the facility
  totals and the month totals; the empty grouping, the whole table's column total, is always
  added: it is the sum of any grouping's totals). In every
  group of every grouping, no count column has exactly one suppressed cell: when one cell alone is
  suppressed, one more non-zero published cell of the group is suppressed, so that a subtraction
  from the group's total yields only the sum of two or more cells. The complement is chosen so as
  to disturb the other groupings least: first a cell that is not the only non-zero cell of a
  group in another grouping (that group's total would give it away, and with it the cell it
  protects), then one whose groups in the other groupings already hold a suppressed cell (so it
  pairs there too instead of needing a complement of its own), then the smallest, then the first
  row.
- Dependents: a column listed under a count in `dependent` (a rate, a share, a mean, a quantile,
  or a count describing the same units, like frames of images) is nulled wherever that count is
  suppressed; a dependent count column then counts as suppressed in its own groups.
- Suppression repeats until nothing changes, since each kind can trigger the others, and a
  complement taken for a row can leave its column with a single suppressed cell.
- `suppressed_cells` (added when absent) grows by the number of cells of the row this call nulled.
  A cell null on input counts as already suppressed and is left null.

So, with the totals of every group published, subtracting the published cells of a group from its
total (and repeating with whatever that recovers) recovers no suppressed cell, except in the
cases below.

What it does not guarantee:

- Intervals. With two suppressed cells in a group their sum is known, so each is bounded (at least
  1, at most the sum minus 1) but not pinned. No linear-programming audit of feasible intervals
  (as tau-ARGUS does) is made.
- A group whose only non-zero cell is suppressed has nothing to pair it with (zeros are never
  suppressed); its total is then that same count. For a primary cell that total is itself a small
  count, safe wherever the totals are published suppressed by the same rule, complements
  included (else the grand total minus the other groups' totals gives it). A complement ends up alone so
  only when every candidate of the group it protects is alone in another grouping: the table's
  shape leaves no safe choice, and that total must not be published.
- Combinations of several groups in a two-way table (a cell pinned by the sum of several row
  equations minus several column ones, which needs a suppressed cell that every cycle of the
  pattern avoids) are not searched for.
- Other tables. Only totals that are sums over groups of this table are considered. A total
  published in another table is protected only when the caller lists the grouping it adds up
  over (the per-table policy in `medical_assets.analytics.aggregates` does so for the totals it
  knows of); derivations that combine several tables, each suppressed on its own, are not checked.
- Columns that are neither counts nor listed as dependents are published as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DEFAULT_THRESHOLD = 10
SUPPRESSED_CELLS = "suppressed_cells"


def suppress(
    table: pa.Table,
    count_columns: Sequence[str],
    threshold: int = DEFAULT_THRESHOLD,
    group_by: Sequence[str] | None = None,
    dependent: Mapping[str, Sequence[str]] | None = None,
    sub_counts: Mapping[str, str] | None = None,
    margins: Sequence[Sequence[str]] | None = None,
) -> pa.Table:
    """`table` with small counts, their complements and the statistics that depend on them nulled.

    `count_columns`: the columns holding counts. `threshold`: the largest count suppressed.
    `margins`: the groupings whose group totals may be published, each a list of columns whose
    equal values form a group (an empty list: the whole table). `group_by`: one grouping, short
    for `margins=[group_by]`; with neither, the whole table is the one group. `dependent`: count
    column -> columns that must go when it does. `sub_counts`: count column -> the count column it
    is part of, in the same row.
    """
    dependent = {count: list(columns) for count, columns in (dependent or {}).items()}
    sub_counts = dict(sub_counts or {})
    groupings = _groupings(group_by, margins)
    _check_arguments(table, count_columns, threshold, groupings, dependent, sub_counts)
    counts = {name: _as_floats(table.column(name)) for name in count_columns}
    suppressed = {name: np.isnan(values) | _small(values, threshold) for name, values in counts.items()}
    groups = [_group_ids(table, grouping) for grouping in groupings]
    changed = True
    while changed:  # each kind of suppression can call for the others
        changed = _suppress_sub_counts(counts, suppressed, sub_counts, threshold)
        changed |= _suppress_dependent_counts(counts, suppressed, dependent)
        changed |= _suppress_complements(counts, suppressed, groups)
    return _apply(table, suppressed, dependent)


def _groupings(group_by: Sequence[str] | None, margins: Sequence[Sequence[str]] | None) -> list[list[str]]:
    if group_by is not None and margins is not None:
        raise ValueError("give either group_by or margins, not both: group_by is short for margins=[group_by]")
    if margins is None:
        margins = [group_by or []]
    if isinstance(margins, str) or any(isinstance(grouping, str) for grouping in margins):
        raise ValueError("margins is a list of groupings, each a list of column names")
    groupings = [list(grouping) for grouping in margins]
    # The grand total always counts: it is the sum of any grouping's totals, so a group whose
    # lone suppressed cell has no partner would otherwise be the grand total minus the others.
    return groupings if [] in groupings else [[], *groupings]


def _suppress_sub_counts(
    counts: dict[str, np.ndarray], suppressed: dict[str, np.ndarray], sub_counts: dict[str, str], threshold: int
) -> bool:
    changed = False
    for part, whole in sub_counts.items():
        rest = counts[whole] - counts[part]
        newly = ~suppressed[part] & (counts[part] != 0) & (suppressed[whole] | _small(rest, threshold))
        if newly.any():
            suppressed[part] |= newly
            changed = True
    return changed


def _suppress_dependent_counts(
    counts: dict[str, np.ndarray], suppressed: dict[str, np.ndarray], dependent: dict[str, list[str]]
) -> bool:
    changed = False
    for count, columns in dependent.items():
        for column in columns:
            if column not in counts:
                continue  # a statistic: nulled at the end, it takes part in no total
            newly = ~suppressed[column] & (counts[column] != 0) & suppressed[count]
            if newly.any():
                suppressed[column] |= newly
                changed = True
    return changed


def _suppress_complements(
    counts: dict[str, np.ndarray], suppressed: dict[str, np.ndarray], groupings: list[np.ndarray]
) -> bool:
    """In each group of each grouping where a column has exactly one suppressed cell, suppress one
    more non-zero published cell of that group (the choice is explained in the module's docstring)."""
    changed = False
    for name, values in counts.items():
        for position, groups in enumerate(groupings):
            others = groupings[:position] + groupings[position + 1 :]
            changed |= _pair_lone_cells(values, suppressed[name], groups, others)
    return changed


def _pair_lone_cells(values: np.ndarray, hidden: np.ndarray, groups: np.ndarray, others: list[np.ndarray]) -> bool:
    alone = _per_group(groups, hidden)[groups] == 1
    candidates = np.flatnonzero(alone & ~hidden & (values > 0))
    if not len(candidates):
        return False
    exposed = np.zeros(len(candidates), dtype=np.int64)  # groupings where it would be a lone non-zero cell
    unpaired = np.zeros(len(candidates), dtype=np.int64)  # groupings where it would be a lone suppressed cell
    for other in others:
        starts_alone = _per_group(other, hidden)[other[candidates]] == 0
        only_non_zero = _per_group(other, values > 0)[other[candidates]] == 1
        exposed += starts_alone & only_non_zero
        unpaired += starts_alone
    order = np.lexsort((candidates, values[candidates], unpaired, exposed, groups[candidates]))
    by_group_then_preference = candidates[order]
    _, first = np.unique(groups[by_group_then_preference], return_index=True)
    hidden[by_group_then_preference[first]] = True
    return True


def _per_group(groups: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """How many rows of each group have `flags` set, indexed by group number."""
    return np.bincount(groups, weights=flags.astype(np.float64), minlength=groups.max(initial=-1) + 1)


def _apply(table: pa.Table, suppressed: dict[str, np.ndarray], dependent: dict[str, list[str]]) -> pa.Table:
    """Null the suppressed cells and their dependents, and add what was nulled to `suppressed_cells`."""
    masks = dict(suppressed)
    for count, columns in dependent.items():
        for column in columns:
            if column not in suppressed:
                masks[column] = masks.get(column, np.zeros(len(table), dtype=bool)) | suppressed[count]
    nulled = np.zeros(len(table), dtype=np.int64)
    for name, mask in masks.items():
        column = table.column(name)
        nulled += mask & _is_valid(column)
        null = pa.scalar(None, column.type)
        table = table.set_column(table.schema.get_field_index(name), name, pc.if_else(pa.array(mask), null, column))
    return _add_suppressed_cells(table, nulled)


def _add_suppressed_cells(table: pa.Table, nulled: np.ndarray) -> pa.Table:
    if SUPPRESSED_CELLS not in table.column_names:
        return table.append_column(SUPPRESSED_CELLS, pa.array(nulled, pa.int32()))
    index = table.schema.get_field_index(SUPPRESSED_CELLS)
    column = table.column(index)
    before = column.fill_null(0).to_numpy().astype(np.int64)
    return table.set_column(index, SUPPRESSED_CELLS, pa.array(before + nulled, column.type))


def _small(values: np.ndarray, threshold: int) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (values >= 1) & (values <= threshold)


def _group_ids(table: pa.Table, group_by: Sequence[str]) -> np.ndarray:
    """A group number per row; rows with equal `group_by` values (nulls equal too) share one."""
    if not group_by:
        return np.zeros(len(table), dtype=np.int64)
    keys = table.select(list(group_by)).to_pandas()
    return keys.groupby(list(group_by), dropna=False, sort=False).ngroup().to_numpy(dtype=np.int64)


def _as_floats(column: pa.ChunkedArray) -> np.ndarray:
    """Counts as floats, null as NaN (counts stay exact below 2**53)."""
    return column.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def _is_valid(column: pa.ChunkedArray) -> np.ndarray:
    return pc.is_valid(column).to_numpy(zero_copy_only=False).astype(bool)


def _check_arguments(
    table: pa.Table,
    count_columns: Sequence[str],
    threshold: int,
    groupings: list[list[str]],
    dependent: dict[str, list[str]],
    sub_counts: dict[str, str],
) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) or threshold < 0:
        raise ValueError(f"the suppression threshold must be a whole number of 0 or more, got {threshold!r}")
    named = {*count_columns, *(column for grouping in groupings for column in grouping), *dependent, *sub_counts, *sub_counts.values()}
    named.update(column for columns in dependent.values() for column in columns)
    missing = sorted(named - set(table.column_names))
    if missing:
        raise ValueError(f"suppression names columns the table does not have: {', '.join(missing)}")
    not_counts = sorted({*dependent, *sub_counts, *sub_counts.values()} - set(count_columns))
    if not_counts:
        raise ValueError(f"dependent and sub_counts must refer to count columns; not counts: {', '.join(not_counts)}")
