"""Nothing suppressed comes back by subtraction: the published analytics tables (built by the real
aggregation and suppression on a small synthetic feed with planted small cells), and the dashboard
drawn from them, are attacked the way a reader with a calculator would.

The attacker knows the totals of every dimension of each table (row totals, column totals, the
grand total), whether published today or not, as a table of totals would publish them: suppressed
like any table (a small total and its complement; a grand total that is small). From a total,
minus the published cells it adds up, they get the sum of the suppressed cells of that row or
column; when that is one cell, its value. They repeat with what they recovered, and also solve all
the equations together.
"""

import json
import re
from collections import defaultdict
from datetime import datetime

import numpy as np
import pyarrow as pa
import pytest

from medical_assets.analytics import aggregates
from medical_assets.analytics.dashboard_html import build_dashboard_html
from medical_assets.analytics.suppression import suppress
from medical_assets.analytics.tables import ANALYTICS_TABLES
from medical_assets.dicom.tables import DEID_DICOM_IMAGES
from medical_assets.hl7 import tables as phi_tables
from medical_assets.privacy.hl7_deid_tables import DEID_HL7_TABLES

THRESHOLD = 10

# The dimensions a reader can sum each table over; () is the grand total.
ATTACK_MARGINS = {
    "hospital_utilization": [(), ("sending_facility",), ("month",)],
    "patient_demographics": [(), ("patient_gender",), ("age_band",)],
    "message_types": [(), ("message_type",), ("hl7_version",)],
    "lab_results": [()],
    "pharmacy": [(), ("give_code",), ("give_code", "give_name"), ("route",)],
    "imaging": [()],
    "imaging_transfer_syntaxes": [(), ("modality",), ("transfer_syntax_uid",)],
    "data_quality_files": [(), ("sending_facility",)],
    "data_quality_facilities": [()],
}

MONTHS = ["2024-01", "2024-02", "2024-03", "2024-04"]
# Messages per facility and month; the small ones are planted.
MESSAGES = {
    "ST_MARYS_HOSP": [64, 71, 58, 66],
    "CITY_GENERAL": [41, 4, 38, 45],  # February: 4
    "NORTHSIDE_CLINIC": [23, 27, 6, 25],  # March: 6
    "HILLTOP_HOSPICE": [0, 0, 3, 0],  # a facility with 3 messages in all: never to be named
}
TESTS = [("2345-7", "Glucose", "mg/dL"), ("2823-3", "Potassium", "mmol/L"), ("718-7", "Hemoglobin", "g/dL")]
RARE_TEST = ("99999-1", "Porphobilinogen deaminase", "U/L")  # 4 results in all
MEDICATIONS = [("00409-4888", "Heparin sodium"), ("00143-9876", "Ceftriaxone"), ("00093-0311", "Metformin")]
RARE_MEDICATION = ("50242-0134", "Onasemnogene abeparvovec")  # 2 orders in all
ROUTES = ["IV", "PO", "SC"]
GENDERS = ["F", "M", "U"]
BANDS = ["0-17", "18-29", "30-44", "45-64", "65-89", "90+"]


def _feed(seed: int = 7):
    """De-identified and PHI tables of a small feed: one file per facility, a message a row."""
    rng = np.random.default_rng(seed)
    messages, phi_messages, labs, orders, errors = [], [], [], [], []
    patient = 0
    for facility, per_month in MESSAGES.items():
        file = f"feeds/{facility.lower()}.hl7"
        index = 0
        for month, count in zip(MONTHS, per_month):
            for _ in range(count):
                kind = rng.choice(["ADT^A01", "ADT^A03", "ORU^R01", "RDE^O11", "ADT^A08"], p=[0.2, 0.2, 0.3, 0.2, 0.1])
                if facility == "CITY_GENERAL" and month == "2024-03" and index % 19 == 0:
                    kind = "ADT^A04"  # a rare type: about 2 messages
                version = "2.3" if rng.random() < 0.3 else "2.5.1"
                patient += 1
                gender = GENDERS[int(rng.choice(3, p=[0.5, 0.47, 0.03]))]
                band = BANDS[int(rng.choice(6, p=[0.15, 0.2, 0.2, 0.25, 0.18, 0.02]))]
                key = {"source_file_token": _token(file), "message_index": index}
                messages.append(
                    {
                        **key,
                        "sending_facility": facility,
                        "message_type": kind,
                        "hl7_version": version,
                        "message_year": 2024,
                        "patient_token": f"p{patient}",
                        "patient_gender": gender,
                        "age_band": band,
                        "validation_score": 1.0,
                    }
                )
                phi_messages.append(
                    {"source_file": file, "message_index": index, "message_datetime": datetime.fromisoformat(f"{month}-15")}
                )
                if kind == "ORU^R01":
                    for code, name, units in TESTS:
                        value = float(rng.normal(100, 10))
                        flag = "H" if value > 112 else "N"
                        labs.append({**key, "observation_code": code, "observation_name": name, "units": units,
                                     "numeric_value": value, "abnormal_flag": flag})  # fmt: skip
                    if len([row for row in labs if row["observation_code"] == RARE_TEST[0]]) < 4:
                        code, name, units = RARE_TEST
                        labs.append({**key, "observation_code": code, "observation_name": name, "units": units,
                                     "numeric_value": 3.0, "abnormal_flag": "N"})  # fmt: skip
                if kind == "RDE^O11":
                    code, name = MEDICATIONS[int(rng.integers(3))]
                    route = ROUTES[int(rng.choice(3, p=[0.6, 0.3, 0.1]))]
                    orders.append({**key, "give_code": code, "give_name": name, "route": route})
                    if len([row for row in orders if row["give_code"] == RARE_MEDICATION[0]]) < 2:
                        orders.append({**key, "give_code": RARE_MEDICATION[0], "give_name": RARE_MEDICATION[1], "route": "IT"})
                if rng.random() < 0.08:
                    errors.append({"source_file": file, "message_index": index, "byte_offset": 0, "error": "bad segment"})
                index += 1
    deid = {
        "hl7_messages": pa.Table.from_pylist(messages, schema=DEID_HL7_TABLES["hl7_messages"]),
        "hl7_lab_results": pa.Table.from_pylist(labs, schema=DEID_HL7_TABLES["hl7_lab_results"]),
        "hl7_pharmacy_orders": pa.Table.from_pylist(orders, schema=DEID_HL7_TABLES["hl7_pharmacy_orders"]),
        "dicom_images": _images(rng),
    }
    phi = {
        "hl7_messages": pa.Table.from_pylist(phi_messages, schema=phi_tables.HL7_MESSAGES),
        "hl7_errors": pa.Table.from_pylist(errors, schema=phi_tables.HL7_ERRORS),
    }
    return deid, phi


def _images(rng) -> pa.Table:
    explicit, implicit, jpeg = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.4.50"
    plan = [("CT", explicit, 44), ("CT", implicit, 27), ("MR", explicit, 35), ("MR", jpeg, 3), ("US", jpeg, 5), ("CR", explicit, 22), ("CR", implicit, 18)]  # fmt: skip
    rows = []
    for modality, syntax, count in plan:
        for index in range(count):
            rows.append(
                {
                    "modality": modality,
                    "study_instance_uid": f"2.25.{modality}.{index % 4}",
                    "number_of_frames": 1 + int(rng.integers(3)),
                    "transfer_syntax_uid": syntax,
                    "pixel_mean": float(rng.normal(500, 50)),
                    "pixel_std": 40.0,
                    "pixel_min": 0.0,
                    "pixel_max": 4095.0,
                }
            )
    return pa.Table.from_pylist(rows, schema=DEID_DICOM_IMAGES)


def _token(name: str) -> str:
    return "file-" + str(sum(name.encode()) % 100_000)


@pytest.fixture(scope="module")
def computed():
    deid, phi = _feed()
    return aggregates.compute_all(deid, phi, None, _token)


@pytest.fixture(scope="module")
def published(computed):
    return aggregates.publish_combined(computed, THRESHOLD)


def _key_columns(name: str) -> list[str]:
    schema = ANALYTICS_TABLES[name]
    return [column for column in schema.names if schema.field(column).type == pa.string()]


def _cells(computed, published, name: str, column: str) -> list[tuple[dict, int, int | None]]:
    """(keys, true value, published value or None) of every cell of `column`, matched on the keys."""
    keys = _key_columns(name)
    shown = {tuple(row[key] for key in keys): row[column] for row in published[name].to_pylist()}
    return [
        ({key: row[key] for key in keys}, row[column], shown[tuple(row[key] for key in keys)])
        for row in computed[name].to_pylist()
    ]


def _equations(cells, margins) -> list[tuple[list[int], int]]:
    """(suppressed cells of a group, total minus its published cells) for every total the attacker knows."""
    equations = []
    for grouping in margins:
        groups = defaultdict(list)
        for position, (keys, _, _) in enumerate(cells):
            groups[tuple(keys[column] for column in grouping)].append(position)
        members_of = list(groups.values())
        for members, known in zip(members_of, _published_totals([sum(cells[i][1] for i in m) for m in members_of])):
            if not known:
                continue
            total = sum(cells[i][1] for i in members)
            hidden = [i for i in members if cells[i][2] is None]
            published = sum(cells[i][2] for i in members if cells[i][2] is not None)
            if hidden:
                equations.append((hidden, total - published))
    return equations


def _published_totals(totals: list[int]) -> list[bool]:
    """Which totals of one grouping a reader knows: all of them, but where they would be published
    as a table of their own (facility totals in data_quality_facilities), suppressed like one (a
    small total and its complement; the grand total then gives back neither)."""
    if len(totals) == 1:
        return [not 1 <= totals[0] <= THRESHOLD]
    shown = suppress(pa.table({"total": pa.array(totals, pa.int64())}), ["total"], threshold=THRESHOLD)
    return [value is not None for value in shown.column("total").to_pylist()]


def _peeled(cells, equations) -> dict[int, int]:
    """Subtraction, repeated: a group with one unknown cell left gives it away."""
    known: dict[int, int] = {}
    progress = True
    while progress:
        progress = False
        for hidden, rest in equations:
            unknown = [i for i in hidden if i not in known]
            if len(unknown) == 1:
                known[unknown[0]] = rest - sum(known[i] for i in hidden if i in known)
                progress = True
    return known


def _solved(cells, equations) -> set[int]:
    """Cells fixed by the equations taken together: those whose unit vector lies in their row space."""
    hidden = sorted({i for members, _ in equations for i in members})
    if not hidden:
        return set()
    column = {cell: position for position, cell in enumerate(hidden)}
    matrix = np.zeros((len(equations), len(hidden)))
    for row, (members, _) in enumerate(equations):
        matrix[row, [column[i] for i in members]] = 1.0
    rank = np.linalg.matrix_rank(matrix)
    fixed = set()
    for cell, position in column.items():
        unit = np.zeros((1, len(hidden)))
        unit[0, position] = 1.0
        if np.linalg.matrix_rank(np.vstack([matrix, unit])) == rank:
            fixed.add(cell)
    return fixed


def test_the_feed_plants_small_cells_in_every_table(computed, published):
    for name in ATTACK_MARGINS:
        counts = aggregates.SUPPRESSION_POLICIES[name].count_columns
        small = [row for row in computed[name].to_pylist() if any(1 <= (row[c] or 0) <= THRESHOLD for c in counts)]
        assert small, f"{name}: nothing planted"
        assert any(row[c] is None for row in published[name].to_pylist() for c in counts), name


@pytest.mark.parametrize("name", list(ATTACK_MARGINS))
def test_no_suppressed_cell_is_recovered_by_subtracting_from_any_total(computed, published, name):
    """Attack: take a row, column or grand total, subtract the published cells it adds up, and
    repeat with what that recovers: with one-dimensional complements, a facility's months were
    paired but a month column could be left with a single hidden cell."""
    for column in aggregates.SUPPRESSION_POLICIES[name].count_columns:
        cells = _cells(computed, published, name, column)
        recovered = _peeled(cells, _equations(cells, ATTACK_MARGINS[name]))
        assert not recovered, (name, column, [cells[i][0] for i in recovered])


@pytest.mark.parametrize("name", list(ATTACK_MARGINS))
def test_no_suppressed_cell_is_fixed_by_all_the_totals_together(computed, published, name):
    """Attack: solve every total's equation at once (row totals plus column totals minus others)."""
    for column in aggregates.SUPPRESSION_POLICIES[name].count_columns:
        cells = _cells(computed, published, name, column)
        fixed = _solved(cells, _equations(cells, ATTACK_MARGINS[name]))
        assert not fixed, (name, column, [cells[i][0] for i in fixed])


def test_one_dimensional_complements_left_a_month_column_open(computed):
    """The attack above is real: suppressing with the facility grouping alone (the former policy)
    leaves a cell that a month total recovers."""
    policy = aggregates.SUPPRESSION_POLICIES["hospital_utilization"]
    former = suppress(
        computed["hospital_utilization"],
        list(policy.count_columns),
        threshold=THRESHOLD,
        group_by=["sending_facility"],
        sub_counts=dict(policy.sub_counts),
    )
    recovered = 0
    for column in policy.count_columns:
        cells = _cells(computed, {"hospital_utilization": former}, "hospital_utilization", column)
        recovered += len(_peeled(cells, _equations(cells, ATTACK_MARGINS["hospital_utilization"])))
    assert recovered


def test_shares_are_of_the_published_messages_only(published):
    """Attack: a share over every message gives that total away (messages / share), and the total
    minus the published messages is the suppressed ones'."""
    rows = published["message_types"].to_pylist()
    shown = sum(row["messages"] for row in rows if row["messages"] is not None)
    assert any(row["messages"] is None for row in rows)
    for row in rows:
        if row["messages"] is None:
            assert row["share"] is None
        elif row["messages"]:
            assert row["messages"] / row["share"] == pytest.approx(shown)


def test_ranks_are_of_the_published_orders_and_suppressed_rows_have_none(computed, published):
    """Attack: a rank over every order places a medication whose routes are hidden between its
    neighbours, bounding the hidden count; the row order would tell the same."""
    rows = published["pharmacy"].to_pylist()
    assert any(row["orders"] is None for row in rows)
    totals = defaultdict(int)
    for row in rows:
        if row["orders"] is not None:
            totals[row["give_code"]] += row["orders"]
    for row in rows:
        if row["orders"] is None:
            assert row["rank"] is None
        else:
            assert row["rank"] == 1 + sum(total > totals[row["give_code"]] for total in totals.values())
    ranks = [row["rank"] for row in rows]
    published_ranks = [rank for rank in ranks if rank is not None]
    assert published_ranks == sorted(published_ranks) and ranks[len(published_ranks) :] == [None] * (len(ranks) - len(published_ranks))


def _chart(page: str, chart: str) -> list[dict]:
    call = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(chart) + r'",\s*', page)
    assert call, chart
    traces, _ = json.JSONDecoder().raw_decode(page, call.end())
    return traces


@pytest.fixture(scope="module")
def page(published):
    return build_dashboard_html(published, None, None, {"deid.suppression_threshold": str(THRESHOLD)})


def test_the_dashboard_names_no_category_whose_counts_are_all_suppressed(computed, published, page):
    """Attack: read the note under a chart, a legend or an axis for the name of a hidden cell:
    a facility with 3 messages, a test done 4 times, a medication ordered twice."""
    for hidden in ("HILLTOP_HOSPICE", RARE_TEST[1], RARE_MEDICATION[1], "Not drawn"):
        assert hidden not in page
    assert re.search(r"\d+ cells suppressed \(counts from 1 to 10, and cells that would reveal them\)", page)


def test_the_dashboard_gives_nothing_beyond_the_published_cells(computed, published, page):
    """Attack: the same subtraction with the numbers the dashboard draws: every point of the
    utilization and demographics charts is the published cell or a gap, so the totals recover
    nothing from it either."""
    measures = ["messages", "admissions", "discharges", "lab_results", "pharmacy_orders"]
    traces = _chart(page, "chart-utilization")
    axes = ["x", "x2", "x3", "x4", "x5"]
    for measure, axis in zip(measures, axes):
        drawn = {(trace["name"], month): value for trace in traces if trace["xaxis"] == axis for month, value in zip(trace["x"], trace["y"])}
        cells = _cells(computed, published, "hospital_utilization", measure)
        as_drawn = [(keys, true, drawn.get((keys["sending_facility"], keys["month"]))) for keys, true, _ in cells]
        _assert_drawn_as_published(as_drawn, cells)
        peeled = _peeled(as_drawn, _equations(as_drawn, ATTACK_MARGINS["hospital_utilization"]))
        assert not [i for i in peeled if cells[i][2] is None], measure
    genders = {"Female": "F", "Male": "M", "Unknown": "U"}
    bars = _chart(page, "chart-demographics")
    drawn = {(genders[trace["name"]], band): value for trace in bars for band, value in zip(trace["x"], trace["y"])}
    cells = _cells(computed, published, "patient_demographics", "patients")
    as_drawn = [(keys, true, drawn.get((keys["patient_gender"], keys["age_band"]))) for keys, true, _ in cells]
    _assert_drawn_as_published(as_drawn, cells)
    peeled = _peeled(as_drawn, _equations(as_drawn, ATTACK_MARGINS["patient_demographics"]))
    assert not [i for i in peeled if cells[i][2] is None]


def _assert_drawn_as_published(as_drawn, cells) -> None:
    """Each point drawn is the published cell; a gap is a suppressed cell, or a zero of a category
    the chart leaves out (its only other counts suppressed)."""
    for (keys, _, drawn), (_, _, shown) in zip(as_drawn, cells):
        assert drawn == shown or (drawn is None and shown == 0), keys
