"""Small-cell suppression: primary, complementary, sub-counts and dependents."""

from collections import defaultdict

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medical_assets.analytics.suppression import DEFAULT_THRESHOLD, suppress


def _table(**columns) -> pa.Table:
    return pa.table(
        {
            name: pa.array(values, pa.int64()) if name not in ("facility", "share", "rate") else pa.array(values)
            for name, values in columns.items()
        }
    )


def test_default_threshold_is_the_cms_cell_size():
    assert DEFAULT_THRESHOLD == 10


def test_no_published_count_lies_between_one_and_the_threshold():
    table = _table(messages=list(range(31)))
    published = suppress(table, ["messages"]).column("messages").to_pylist()
    assert all(value is None or value == 0 or value > 10 for value in published)
    assert published[1:11] == [None] * 10


def test_zero_stays_zero_and_published_counts_are_unchanged():
    table = _table(messages=[0, 0, 3, 40, 50, 0])
    published = suppress(table, ["messages"]).column("messages").to_pylist()
    assert published[0] == published[1] == published[5] == 0
    assert [value for value in published if value not in (None, 0)] == [50]  # 40 is the complement of 3


def test_a_single_suppressed_cell_gets_the_smallest_non_zero_cell_of_its_group_as_complement():
    # Facility A's total (85) is published elsewhere: 85 - 50 - 30 would give the 5 away.
    table = _table(facility=["A", "A", "A", "B", "B"], messages=[50, 5, 30, 200, 300])
    published = suppress(table, ["messages"], group_by=["facility"]).column("messages").to_pylist()
    assert published == [50, None, None, 200, 300]
    total_a = 85
    assert total_a - 50 == 35  # all that subtraction yields: the sum of the two hidden cells, not either one


def test_complement_skips_zeros_and_prefers_the_first_row_on_ties():
    table = _table(facility=["A"] * 5, messages=[0, 7, 40, 40, 100])
    published = suppress(table, ["messages"], group_by=["facility"]).column("messages").to_pylist()
    assert published == [0, None, None, 40, 100]


def test_two_suppressed_cells_need_no_complement():
    table = _table(facility=["A"] * 4, messages=[3, 4, 40, 100])
    assert suppress(table, ["messages"], group_by=["facility"]).column("messages").to_pylist() == [None, None, 40, 100]


def test_without_group_by_the_whole_table_is_one_group():
    table = _table(facility=["A", "B", "C"], messages=[5, 20, 30])
    assert suppress(table, ["messages"]).column("messages").to_pylist() == [None, None, 30]


def test_null_group_keys_form_a_group_of_their_own():
    table = _table(facility=[None, None, "A", "A"], messages=[4, 50, 60, 70])
    published = suppress(table, ["messages"], group_by=["facility"]).column("messages").to_pylist()
    assert published == [None, None, 60, 70]


def test_a_group_with_no_other_non_zero_cell_keeps_its_single_suppressed_cell():
    table = _table(facility=["A", "A"], messages=[4, 0])
    assert suppress(table, ["messages"], group_by=["facility"]).column("messages").to_pylist() == [None, 0]


def test_dependent_statistics_are_nulled_with_their_count():
    table = pa.table({"messages": pa.array([5, 100, 200], pa.int64()), "share": [5 / 305, 100 / 305, 200 / 305]})
    published = suppress(table, ["messages"], dependent={"messages": ["share"]})
    assert published.column("messages").to_pylist() == [None, None, 200]
    assert published.column("share").to_pylist() == [None, None, pytest.approx(200 / 305)]


def test_a_statistic_depending_on_two_counts_goes_with_either():
    table = pa.table(
        {
            "messages": pa.array([500, 3, 0, 400, 600], pa.int64()),
            "errors": pa.array([4, 0, 0, 50, 60], pa.int64()),
            "error_rate": [4 / 504, 0.0, None, 50 / 450, 60 / 660],
        }
    )
    published = suppress(
        table, ["messages", "errors"], dependent={"messages": ["error_rate"], "errors": ["error_rate"]}
    )
    assert published.column("error_rate").to_pylist()[:3] == [None, None, None]


def test_a_sub_count_goes_when_the_rest_of_its_whole_is_small():
    # 50 results, 45 abnormal: publishing 45 would say that 5 were normal.
    table = _table(results=[50, 50, 5, 200, 300], abnormal=[45, 30, 0, 100, 120])
    published = suppress(table, ["results", "abnormal"], sub_counts={"abnormal": "results"})
    abnormal = published.column("abnormal").to_pylist()
    assert abnormal[0] is None
    assert abnormal[1] == 30 or abnormal[1] is None  # 30 may be taken as a complement, never left alone
    assert abnormal[2] == 0  # zero stays zero, even under a suppressed whole


def test_a_non_zero_sub_count_goes_with_its_suppressed_whole():
    # 60 results, all numeric: the whole is hidden as the complement of 5, and 60 numeric would show it.
    table = _table(results=[5, 60, 200], numeric=[0, 60, 200])
    published = suppress(table, ["results", "numeric"], sub_counts={"numeric": "results"}).to_pydict()
    assert published["results"] == [None, None, 200]
    assert published["numeric"] == [0, None, None]  # 200 then pairs with the lone hidden 60


def test_a_dependent_count_column_takes_part_in_complementary_suppression():
    table = _table(images=[5, 100, 200, 300], frames=[500, 100, 200, 900])
    published = suppress(table, ["images", "frames"], dependent={"images": ["frames"]}).to_pydict()
    assert published["images"] == [None, None, 200, 300]
    assert published["frames"][:2] == [None, None]  # frames of few images, and then its own complement


def test_the_threshold_is_configurable():
    table = _table(messages=[3, 7, 12, 40, 50])
    assert suppress(table, ["messages"], threshold=5).column("messages").to_pylist() == [None, None, 12, 40, 50]
    assert suppress(table, ["messages"], threshold=0).column("messages").to_pylist() == [3, 7, 12, 40, 50]


def test_suppressed_cells_counts_what_was_nulled_and_a_second_pass_changes_nothing():
    table = pa.table(
        {
            "messages": pa.array([5, 100, 200], pa.int64()),
            "share": [5 / 305, 100 / 305, 200 / 305],
            "suppressed_cells": pa.array([0, 0, 0], pa.int32()),
        }
    )
    once = suppress(table, ["messages"], dependent={"messages": ["share"]})
    assert once.column("suppressed_cells").to_pylist() == [2, 2, 0]
    assert once.schema == table.schema
    assert suppress(once, ["messages"], dependent={"messages": ["share"]}).equals(once)


def test_suppressed_cells_is_added_when_absent():
    published = suppress(_table(messages=[5, 20, 30]), ["messages"])
    assert published.column("suppressed_cells").to_pylist() == [1, 1, 0]


def test_an_empty_table_stays_empty():
    table = pa.table({"facility": pa.array([], pa.string()), "messages": pa.array([], pa.int64())})
    published = suppress(table, ["messages"], group_by=["facility"])
    assert published.num_rows == 0
    assert published.column_names == ["facility", "messages", "suppressed_cells"]


@pytest.mark.parametrize("threshold", [-1, 2.5, True])
def test_a_threshold_that_is_not_a_whole_number_of_zero_or_more_is_refused(threshold):
    with pytest.raises(ValueError, match="threshold"):
        suppress(_table(messages=[1]), ["messages"], threshold=threshold)


def test_unknown_columns_are_named():
    with pytest.raises(ValueError, match="patients"):
        suppress(_table(messages=[1]), ["patients"])
    with pytest.raises(ValueError, match="rate"):
        suppress(_table(messages=[1]), ["messages"], dependent={"messages": ["rate"]})


_GROUPS = st.sampled_from(["A", "B", "C", None])
_COUNTS = st.integers(min_value=0, max_value=40)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.tuples(_GROUPS, _COUNTS, _COUNTS, _COUNTS), max_size=30),
    threshold=st.integers(min_value=0, max_value=15),
)
def test_property_no_group_has_a_single_derivable_suppressed_cell(rows, threshold):
    groups = [row[0] for row in rows]
    wholes = [row[1] + row[2] for row in rows]
    parts = [row[2] for row in rows]
    others = [row[3] for row in rows]
    table = pa.table(
        {
            "facility": pa.array(groups, pa.string()),
            "whole": pa.array(wholes, pa.int64()),
            "part": pa.array(parts, pa.int64()),
            "other": pa.array(others, pa.int64()),
            "rate": pa.array([part / whole if whole else None for part, whole in zip(parts, wholes)], pa.float64()),
        }
    )
    published = suppress(
        table,
        ["whole", "part", "other"],
        threshold=threshold,
        group_by=["facility"],
        dependent={"whole": ["rate"], "part": ["rate"]},
        sub_counts={"part": "whole"},
    ).to_pydict()
    for name, before in (("whole", wholes), ("part", parts), ("other", others)):
        after = published[name]
        for old, new in zip(before, after):
            assert new is None or new == old  # nothing published is altered
            assert not (old == 0 and new is None)  # zero stays zero
            assert new is None or not 1 <= new <= threshold  # no small cell
        for group in set(groups):
            cells = [(old, new) for g, old, new in zip(groups, before, after) if g == group]
            hidden = [old for old, new in cells if new is None]
            if len(hidden) == 1:
                # A lone suppressed cell is allowed only when no other non-zero cell could pair with it.
                assert sum(1 for old, _ in cells if old > 0) == 1
    for whole, part, new_whole, new_part in zip(wholes, parts, published["whole"], published["part"]):
        if new_part is not None and new_whole is not None:
            assert not 1 <= whole - part <= threshold  # the rest of the whole is never derivable and small
        if new_whole is None and part > 0:
            assert new_part is None
    for new_whole, new_part, rate in zip(published["whole"], published["part"], published["rate"]):
        if new_whole is None or new_part is None:
            assert rate is None
    nulled = [
        sum(before is not None and after is None for before, after in zip(row_before, row_after))
        for row_before, row_after in zip(
            zip(wholes, parts, others, table.column("rate").to_pylist()),
            zip(published["whole"], published["part"], published["other"], published["rate"]),
        )
    ]
    assert published["suppressed_cells"] == nulled


def test_a_two_way_table_pairs_suppressed_cells_in_rows_and_in_columns():
    """Attack: facility x month, complements taken per facility only. The 4 of (B, Feb) is paired
    with (B, Jan) in B's row, but Feb's column then holds a single hidden cell: the February total
    minus the published Februaries gives the 4 back."""
    table = pa.table(
        {
            "facility": ["A", "A", "B", "B", "C", "C"],
            "month": ["Jan", "Feb", "Jan", "Feb", "Jan", "Feb"],
            "messages": pa.array([50, 60, 40, 4, 70, 80], pa.int64()),
        }
    )
    one_way = suppress(table, ["messages"], group_by=["facility"]).column("messages").to_pylist()
    assert one_way == [50, 60, None, None, 70, 80]
    february_total = 60 + 4 + 80
    assert february_total - 60 - 80 == 4  # recovered: what this test guards against
    two_way = suppress(table, ["messages"], margins=[["facility"], ["month"]]).column("messages").to_pylist()
    # Feb's lone 4 takes A's 60 (the smallest in Feb), which A's row pairs with A's 50: a rectangle.
    assert two_way == [None, None, None, None, 70, 80]
    hidden = {(f, m) for f, m, v in zip(table["facility"].to_pylist(), table["month"].to_pylist(), two_way) if v is None}
    for facility in "ABC":
        assert len({m for f, m in hidden if f == facility}) in (0, 2)
    for month in ("Jan", "Feb"):
        assert len({f for f, m in hidden if m == month}) != 1


def test_group_by_and_margins_are_not_both_given():
    with pytest.raises(ValueError, match="margins"):
        suppress(_table(messages=[1]), ["messages"], group_by=[], margins=[[]])


@settings(max_examples=300, deadline=None)
@given(
    grid=st.lists(st.lists(st.one_of(st.just(0), st.integers(1, 12), st.integers(11, 90)), min_size=2, max_size=5), min_size=2, max_size=5),
    threshold=st.integers(min_value=1, max_value=10),
)
def test_property_in_a_two_way_table_no_row_or_column_has_a_single_pairable_suppressed_cell(grid, threshold):
    width = min(len(row) for row in grid)
    cells = [(r, c, row[c]) for r, row in enumerate(grid) for c in range(width)]
    table = pa.table(
        {
            "row": pa.array([r for r, _, _ in cells], pa.int64()),
            "col": pa.array([c for _, c, _ in cells], pa.int64()),
            "count": pa.array([v for _, _, v in cells], pa.int64()),
        }
    )
    published = suppress(table, ["count"], threshold=threshold, margins=[["row"], ["col"]]).column("count").to_pylist()
    for (_, _, old), new in zip(cells, published):
        assert new is None or (new == old and not 1 <= new <= threshold)
        assert not (old == 0 and new is None)
    for axis in (0, 1, None):
        lines = defaultdict(list)
        for (r, c, old), new in zip(cells, published):
            lines[(r, c)[axis] if axis is not None else 0].append((old, new))
        for line in lines.values():
            if sum(new is None for _, new in line) == 1:
                assert sum(old > 0 for old, _ in line) == 1  # nothing else to pair it with
