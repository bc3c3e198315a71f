"""Small-cell suppression of a published aggregate: counts from 1 to a threshold become null.

`suppress` guarantees, for the table it is given and each of its `count_columns`:

- Primary suppression: no count from 1 to `threshold` is published (CMS's cell-size rule, 10 by
  default). Zero stays zero: an empty cell says nothing about anyone.
- Sub-counts: a count that is part of another in the same row (`sub_counts`, e.g. abnormal results
  of all results) is suppressed when it is 1..threshold, when the rest of its whole (whole minus
  part, derivable by subtraction) is 1..threshold, and when its whole is suppressed (a part close
  to its whole would give the whole away).
- Complementary suppression: the rows are split into groups that share a total published
  elsewhere (`group_by`; the whole table when None, i.e. the column total). Within each group, no
  count column has exactly one suppressed non-zero cell: when one cell alone is suppressed, the
  smallest non-zero published cell of the group is suppressed too (the first row on ties), so a
  subtraction from the total yields only the sum of two or more cells. Groups partition the
  table, so the column total over all rows is protected as well.
- Dependents: a column listed under a count in `dependent` (a rate, a share, a mean, a quantile,
  or a count describing the same units, like frames of images) is nulled wherever that count is
  suppressed; a dependent count column then counts as suppressed in its own groups.
- Suppression repeats until nothing changes, since each kind can trigger the others.
- `suppressed_cells` (added when absent) grows by the number of cells of the row this call nulled.
  A cell null on input counts as already suppressed and is left null.

What it does not guarantee:

- Intervals. With two suppressed cells in a group their sum is known, so each is bounded (at least
  1, at most the sum minus 1) but not pinned. No linear-programming audit of feasible intervals
  (as tau-ARGUS does) is made.
- A group whose only non-zero cell is suppressed has nothing to pair it with; the group's total is
  then that same small count, safe only where that total is itself suppressed.
- Other tables. Only totals that are sums over `group_by` groups of this table are considered. A
  total published in another table is protected only when the caller groups this table the way
  that total adds up (the per-table policy in `medical_assets.analytics.aggregates` does so for
  the totals it knows of); derivations that combine several tables, or several suppressed tables
  with different groupings, are not checked.
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
) -> pa.Table:
    """`table` with small counts, their complements and the statistics that depend on them nulled.

    `count_columns`: the columns holding counts. `threshold`: the largest count suppressed.
    `group_by`: the columns whose equal values form a group sharing a published total (None: the
    whole table is one group). `dependent`: count column -> columns that must go when it does.
    `sub_counts`: count column -> the count column it is part of, in the same row.
    """
    dependent = {count: list(columns) for count, columns in (dependent or {}).items()}
    sub_counts = dict(sub_counts or {})
    _check_arguments(table, count_columns, threshold, group_by, dependent, sub_counts)
    counts = {name: _as_floats(table.column(name)) for name in count_columns}
    suppressed = {name: np.isnan(values) | _small(values, threshold) for name, values in counts.items()}
    groups = _group_ids(table, group_by)
    changed = True
    while changed:  # each kind of suppression can call for the others
        changed = _suppress_sub_counts(counts, suppressed, sub_counts, threshold)
        changed |= _suppress_dependent_counts(counts, suppressed, dependent)
        changed |= _suppress_complements(counts, suppressed, groups)
    return _apply(table, suppressed, dependent)


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


def _suppress_complements(counts: dict[str, np.ndarray], suppressed: dict[str, np.ndarray], groups: np.ndarray) -> bool:
    """In each group where a column has exactly one suppressed cell, suppress its smallest non-zero published one."""
    changed = False
    rows = np.arange(len(groups))
    for name, values in counts.items():
        hidden = suppressed[name]
        hidden_per_group = np.bincount(groups, weights=hidden.astype(np.float64), minlength=groups.max(initial=-1) + 1)
        alone = hidden_per_group[groups] == 1
        candidates = rows[alone & ~hidden & (values > 0)]
        if not len(candidates):
            continue
        by_group_then_size = candidates[np.lexsort((candidates, values[candidates], groups[candidates]))]
        _, first = np.unique(groups[by_group_then_size], return_index=True)
        hidden[by_group_then_size[first]] = True
        changed = True
    return changed


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


def _group_ids(table: pa.Table, group_by: Sequence[str] | None) -> np.ndarray:
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
    group_by: Sequence[str] | None,
    dependent: dict[str, list[str]],
    sub_counts: dict[str, str],
) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) or threshold < 0:
        raise ValueError(f"the suppression threshold must be a whole number of 0 or more, got {threshold!r}")
    named = {*count_columns, *(group_by or ()), *dependent, *sub_counts, *sub_counts.values()}
    named.update(column for columns in dependent.values() for column in columns)
    missing = sorted(named - set(table.column_names))
    if missing:
        raise ValueError(f"suppression names columns the table does not have: {', '.join(missing)}")
    not_counts = sorted({*dependent, *sub_counts, *sub_counts.values()} - set(count_columns))
    if not_counts:
        raise ValueError(f"dependent and sub_counts must refer to count columns; not counts: {', '.join(not_counts)}")
