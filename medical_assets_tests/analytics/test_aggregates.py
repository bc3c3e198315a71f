"""Analytics tables against an independent recomputation (plain Python over the parsed and de-identified
tables), and their published form against the suppression rules."""

import secrets
from collections import Counter, defaultdict
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pydicom.uid import UID

from medical_assets.analytics import aggregates, summaries, validation
from medical_assets.analytics.tables import ANALYTICS_TABLES, MESSAGE_VALIDATION
from medical_assets.dicom import read_dicom_file
from medical_assets.dicom.deidentify import deid_image_row
from medical_assets.dicom.tables import DEID_DICOM_IMAGES
from medical_assets.hl7 import parse_hl7_file
from medical_assets.hl7 import tables as phi_tables
from medical_assets.privacy.hl7_deid import MESSAGE_DOMAIN, SOURCE_FILE_DOMAIN, deidentify_hl7_tables
from medical_assets.privacy.hl7_deid_tables import DEID_HL7_TABLES
from medical_assets.privacy.keys import parse_key_ring
from medical_assets.privacy.pseudonyms import Pseudonymizer
from medical_assets.synthetic import dicom as synthetic_dicom
from medical_assets.synthetic import hl7 as synthetic_hl7

THRESHOLD = 10

# Odd messages beside the synthetic feeds: a small facility, a type without rule, a message without
# MSH-4, free-text and unflagged results, an order without code or route, and a broken message.
_EXTRA_MESSAGES = [
    [
        "MSH|^~\\&|ADT|TINY_CLINIC|EMR|WARD|20240415080000||ADT^A08^ADT_A01|TINY1|P|2.3",
        "EVN|A08|20240415080000",
        "PID|1||TC001^^^TC^MR||ROE^RICHARD||19300101",
        "PV1|1|O|OPC^1^^TINY_CLINIC",
    ],
    [
        "MSH|^~\\&|LAB|TINY_CLINIC|EMR|WARD|20240416080000||ORU^R01^ORU_R01|TINY2|P|2.3",
        "PID|1||TC001^^^TC^MR||ROE^RICHARD||19300101",
        "OBR|1|O1|L1|CUSTOM^Custom panel^L",
        "OBX|1|TX|X-1^Remark^L||see report||||A|||F",
        "OBX|2|NM|X-2^Score^L||7|pts||| |||F",
    ],
    ["MSH|^~\\&|SCH||EMR|WARD|20240417080000||SIU^S12^SIU_S12|TINY3|P|2.5", "SCH|1"],
    [
        "MSH|^~\\&|PHARM|TINY_CLINIC|EMR|WARD|20240418080000||RDE^O11^RDE_O11|TINY4|P|2.5",
        "PID|1||TC002^^^TC^MR||DOE^JANE||19900101|F",
        "ORC|NW|RX9",
        "RXE|1^QD|^compounded cream^LOCAL|1||TUBE|CRM",
    ],
    ["MSH|^~\\&|ADT"],
]


@pytest.fixture(scope="module")
def pseudonymizer():
    return Pseudonymizer(parse_key_ring(secrets.token_urlsafe(32)).current)


@pytest.fixture(scope="module")
def file_token(pseudonymizer):
    return partial(pseudonymizer.token, SOURCE_FILE_DOMAIN)


@pytest.fixture(scope="module")
def phi():
    settings = synthetic_hl7.HL7CorpusSettings(total_messages=2_000, messages_per_file=500)
    files = {synthetic_hl7.file_name(index): synthetic_hl7.render_file(settings, index) for index in range(4)}
    files["feeds/tiny_clinic.hl7"] = "".join("\r".join(m) + "\r" for m in _EXTRA_MESSAGES).encode()
    files["feeds/not_hl7.hl7"] = b"this is not a message"
    parsed = [parse_hl7_file(data, name).tables() for name, data in files.items()]
    return {name: pa.concat_tables([tables[name] for tables in parsed]) for name in phi_tables.TABLES}


@pytest.fixture(scope="module")
def deid(phi, pseudonymizer):
    # Every value is vocabulary from one patient on: these tests are about the aggregation of rare
    # rows (the vocabulary rule, which would withhold TINY_CLINIC's, has its own tests).
    tables = deidentify_hl7_tables(phi, pseudonymizer, min_patients=1)
    tables["dicom_images"] = _dicom_images(pseudonymizer)
    return tables


@pytest.fixture(scope="module")
def checked(phi, pseudonymizer):
    return validation.validate_messages(
        phi, partial(pseudonymizer.token, MESSAGE_DOMAIN), partial(pseudonymizer.token, SOURCE_FILE_DOMAIN)
    )


@pytest.fixture(scope="module")
def computed(deid, phi, checked, file_token):
    return aggregates.compute_all(deid, phi, checked, file_token)


def _dicom_images(pseudonymizer) -> pa.Table:
    """De-identified rows of real synthetic files, and hand-made rows for counts above the threshold and nulls."""
    settings = synthetic_dicom.DicomCorpusSettings(total_files=6)
    rows = []
    for index in range(6):
        parsed = read_dicom_file(synthetic_dicom.render_file(settings, index), synthetic_dicom.file_name(index))
        rows += [deid_image_row(row, pseudonymizer) for row in parsed.images.to_pylist()]
    for index in range(30):
        rows.append(
            {
                "modality": "CT",
                "study_instance_uid": f"2.25.{index % 3}",
                "number_of_frames": 1,
                "transfer_syntax_uid": "1.2.840.10008.1.2.1",
                "pixel_mean": float(index),
                "pixel_std": 2.0 * index,
                "pixel_min": -1000.0 - index,
                "pixel_max": 1000.0 + index,
            }
        )
    rows += [{"modality": "XA", "study_instance_uid": "2.25.9", "transfer_syntax_uid": "1.2.3.4"}] * 4
    rows += [{"modality": None, "study_instance_uid": None}] * 2
    return pa.Table.from_pylist(rows, schema=DEID_DICOM_IMAGES)


def _keyed(table: pa.Table, keys: list[str]) -> dict[tuple, dict]:
    rows = {}
    for row in table.to_pylist():
        key = tuple(row.pop(name) for name in keys)
        assert key not in rows, f"duplicate row {key}"
        row.pop("suppressed_cells")
        rows[key] = row
    return rows


def _assert_same(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key, row in expected.items():
        for column, value in row.items():
            got = actual[key][column]
            if isinstance(value, float):
                assert got == pytest.approx(value), (key, column)
            else:
                assert got == value, (key, column)


def _message_places(deid, phi, file_token) -> dict[tuple, tuple]:
    month_of = {
        (file_token(row["source_file"]), row["message_index"]): (
            row["message_datetime"].strftime("%Y-%m") if row["message_datetime"] else None
        )
        for row in phi["hl7_messages"].to_pylist()
    }
    return {
        (row["source_file_token"], row["message_index"]): (
            row["sending_facility"],
            month_of.get((row["source_file_token"], row["message_index"])),
        )
        for row in deid["hl7_messages"].to_pylist()
    }


def test_the_columns_the_job_reads_are_all_the_tables_need(deid, phi, file_token):
    narrow = {name: deid[name].select(columns) for name, columns in aggregates.DEID_COLUMNS_READ.items()}
    assert aggregates.publish_all(narrow, phi, file_token) == aggregates.publish_all(deid, phi, file_token)


def test_every_table_has_exactly_its_schema(computed):
    assert computed.keys() == ANALYTICS_TABLES.keys()
    for name, table in computed.items():
        assert table.schema == ANALYTICS_TABLES[name], name
        assert table.num_rows > 0, name


def test_hospital_utilization(computed, deid, phi, file_token):
    places = _message_places(deid, phi, file_token)
    expected = defaultdict(Counter)
    for row in deid["hl7_messages"].to_pylist():
        counts = expected[places[row["source_file_token"], row["message_index"]]]
        counts["messages"] += 1
        counts["admissions"] += row["message_type"] == "ADT^A01"
        counts["discharges"] += row["message_type"] == "ADT^A03"
    for table, column in (("hl7_lab_results", "lab_results"), ("hl7_pharmacy_orders", "pharmacy_orders")):
        for row in deid[table].to_pylist():
            expected[places.get((row["source_file_token"], row["message_index"]), (None, None))][column] += 1
    columns = ["messages", "admissions", "discharges", "lab_results", "pharmacy_orders"]
    expected = {key: {column: counts[column] for column in columns} for key, counts in expected.items()}
    _assert_same(_keyed(computed["hospital_utilization"], ["sending_facility", "month"]), expected)
    assert ("TINY_CLINIC", "2024-04") in expected and (None, "2024-04") in expected


def test_patient_demographics_take_each_patient_at_their_latest_message(computed, deid):
    latest = {}
    for row in deid["hl7_messages"].to_pylist():
        token, year = row["patient_token"], row["message_year"]
        if token is None:
            continue
        if token not in latest or (year if year is not None else -1) >= latest[token][0]:
            latest[token] = (year if year is not None else -1, row["patient_gender"], row["age_band"])
    expected = Counter((gender, band) for _, gender, band in latest.values())
    actual = _keyed(computed["patient_demographics"], ["patient_gender", "age_band"])
    _assert_same(actual, {key: {"patients": count} for key, count in expected.items()})


def test_latest_message_is_by_year_then_by_row():
    rows = [
        {"patient_token": "p1", "message_year": 2024, "patient_gender": "F", "age_band": "30-44"},
        {"patient_token": "p1", "message_year": 2020, "patient_gender": "F", "age_band": "18-29"},
        {"patient_token": "p2", "message_year": 2023, "patient_gender": "M", "age_band": "45-64"},
        {"patient_token": "p2", "message_year": 2023, "patient_gender": "M", "age_band": "65-89"},
        {"patient_token": "p3", "message_year": 2022, "patient_gender": "U", "age_band": "90+"},
        {"patient_token": "p3", "message_year": None, "patient_gender": "U", "age_band": None},
        {"patient_token": None, "message_year": 2024, "patient_gender": "F", "age_band": "0-17"},
    ]
    messages = pa.Table.from_pylist(rows, schema=DEID_HL7_TABLES["hl7_messages"])
    table = aggregates.patient_demographics(messages)
    assert [(r["patient_gender"], r["age_band"], r["patients"]) for r in table.to_pylist()] == [
        ("F", "30-44", 1),
        ("M", "65-89", 1),
        ("U", "90+", 1),
    ]


def test_message_types(computed, deid):
    messages = deid["hl7_messages"].to_pylist()
    expected = Counter((row["message_type"], row["hl7_version"]) for row in messages)
    _assert_same(
        _keyed(computed["message_types"], ["message_type", "hl7_version"]),
        {key: {"messages": count, "share": count / len(messages)} for key, count in expected.items()},
    )


def test_lab_results(computed, deid):
    by_test = defaultdict(list)
    for row in deid["hl7_lab_results"].to_pylist():
        by_test[row["observation_code"], row["observation_name"], row["units"]].append(row)
    expected = {}
    for key, rows in by_test.items():
        flags = [(row["abnormal_flag"] or "").strip().upper() for row in rows]
        abnormal = sum(flag not in ("", "N") for flag in flags)
        values = np.array([row["numeric_value"] for row in rows if row["numeric_value"] is not None])
        percentiles = np.percentile(values, [5, 25, 50, 75, 95]).tolist() if len(values) else [None] * 5
        expected[key] = {
            "results": len(rows),
            "abnormal_results": abnormal,
            "abnormal_rate": abnormal / len(rows),
            "numeric_results": len(values),
            "value_mean": float(values.mean()) if len(values) else None,
            **dict(zip(["value_p05", "value_p25", "value_median", "value_p75", "value_p95"], percentiles)),
        }
    _assert_same(_keyed(computed["lab_results"], ["observation_code", "observation_name", "units"]), expected)
    assert expected["X-1", "Remark", None]["numeric_results"] == 0  # free text: no value statistics


def test_pharmacy_ranks_medications_by_orders_over_all_routes(computed, deid):
    rows = deid["hl7_pharmacy_orders"].to_pylist()
    orders = Counter((row["give_code"], row["give_name"], row["route"]) for row in rows)
    totals = Counter(row["give_code"] or f"name:{row['give_name']}" for row in rows)
    expected = {
        key: {"orders": count, "rank": 1 + sum(total > totals[key[0] or f"name:{key[1]}"] for total in totals.values())}
        for key, count in orders.items()
    }
    _assert_same(_keyed(computed["pharmacy"], ["give_code", "give_name", "route"]), expected)


def test_pharmacy_rank_adds_routes_up():
    rows = [{"give_code": "A", "give_name": "a", "route": route} for route in ["PO"] * 30 + ["IV"] * 30]
    rows += [{"give_code": "B", "give_name": "b", "route": "PO"}] * 40
    orders = pa.Table.from_pylist(rows, schema=DEID_HL7_TABLES["hl7_pharmacy_orders"])
    ranks = {(r["give_code"], r["route"]): r["rank"] for r in aggregates.pharmacy(orders).to_pylist()}
    assert ranks == {("A", "IV"): 1, ("A", "PO"): 1, ("B", "PO"): 2}


def test_imaging(computed, deid):
    by_modality = defaultdict(list)
    for row in deid["dicom_images"].to_pylist():
        by_modality[row["modality"]].append(row)

    def statistic(rows, column, reduce):
        values = [row[column] for row in rows if row[column] is not None]
        return float(reduce(values)) if values else None

    expected = {
        (modality,): {
            "studies": len({row["study_instance_uid"] for row in rows} - {None}),
            "images": len(rows),
            "frames": sum(row["number_of_frames"] or 0 for row in rows),
            "pixel_mean_avg": statistic(rows, "pixel_mean", np.mean),
            "pixel_std_avg": statistic(rows, "pixel_std", np.mean),
            "pixel_min": statistic(rows, "pixel_min", min),
            "pixel_max": statistic(rows, "pixel_max", max),
        }
        for modality, rows in by_modality.items()
    }
    _assert_same(_keyed(computed["imaging"], ["modality"]), expected)


def test_imaging_transfer_syntaxes(computed, deid):
    images = Counter((row["modality"], row["transfer_syntax_uid"]) for row in deid["dicom_images"].to_pylist())
    expected = {
        key: {
            "images": count,
            "transfer_syntax_name": UID(key[1]).name if UID(key[1] or "").is_transfer_syntax else None,
        }
        for key, count in images.items()
    }
    _assert_same(_keyed(computed["imaging_transfer_syntaxes"], ["modality", "transfer_syntax_uid"]), expected)
    assert expected["CT", "1.2.840.10008.1.2.1"]["transfer_syntax_name"] == "Explicit VR Little Endian"


def _quality_inputs(deid, phi, checked, file_token):
    score_of = {(r["source_file_token"], r["message_index"]): r["validation_score"] for r in checked.to_pylist()}
    messages = deid["hl7_messages"].to_pylist()
    facilities = defaultdict(Counter)
    for row in messages:
        if row["sending_facility"] is not None:
            facilities[row["source_file_token"]][row["sending_facility"]] += 1
    file_facility = {
        token: min(name for name, count in counts.items() if count == max(counts.values()))
        for token, counts in facilities.items()
    }
    error_files = [file_token(row["source_file"]) for row in phi["hl7_errors"].to_pylist()]
    return messages, score_of, file_facility, error_files


def _quality_rows(groups: dict) -> dict:
    return {
        key: {
            "messages": group["messages"],
            "errors": group["errors"],
            "error_rate": group["errors"] / (group["messages"] + group["errors"]),
            "mean_validation_score": float(np.mean(group["scores"])) if group["scores"] else None,
        }
        for key, group in groups.items()
    }


def test_data_quality_files(computed, deid, phi, checked, file_token):
    messages, score_of, file_facility, error_files = _quality_inputs(deid, phi, checked, file_token)
    groups = defaultdict(lambda: {"messages": 0, "errors": 0, "scores": []})
    for row in messages:
        group = groups[row["source_file_token"]]
        group["messages"] += 1
        group["scores"].append(score_of[row["source_file_token"], row["message_index"]])
    for token in error_files:
        groups[token]["errors"] += 1
    expected = {
        (token,): {**row, "sending_facility": file_facility.get(token)} for token, row in _quality_rows(groups).items()
    }
    _assert_same(_keyed(computed["data_quality_files"], ["source_file_token"]), expected)
    assert expected[file_token("feeds/tiny_clinic.hl7"),]["errors"] == 1
    assert expected[file_token("feeds/not_hl7.hl7"),]["sending_facility"] is None


def test_data_quality_facilities(computed, deid, phi, checked, file_token):
    messages, score_of, file_facility, error_files = _quality_inputs(deid, phi, checked, file_token)
    groups = defaultdict(lambda: {"messages": 0, "errors": 0, "scores": []})
    for row in messages:
        group = groups[row["sending_facility"],]
        group["messages"] += 1
        group["scores"].append(score_of[row["source_file_token"], row["message_index"]])
    for token in error_files:
        groups[file_facility.get(token),]["errors"] += 1
    _assert_same(_keyed(computed["data_quality_facilities"], ["sending_facility"]), _quality_rows(groups))


def test_no_file_name_or_control_id_reaches_an_output(computed, phi):
    names = set(phi["hl7_messages"].column("source_file").to_pylist()) | set(
        phi["hl7_errors"].column("source_file").to_pylist()
    )
    control_ids = set(phi["hl7_messages"].column("message_control_id").to_pylist())
    for name, table in computed.items():
        for row in table.to_pylist():
            for value in row.values():
                assert value not in names and value not in control_ids, name


@pytest.mark.parametrize("name", list(ANALYTICS_TABLES))
def test_published_tables_hold_no_count_from_one_to_the_threshold(computed, name):
    policy = aggregates.SUPPRESSION_POLICIES[name]
    published = aggregates.publishable(name, computed[name])
    assert published.schema == ANALYTICS_TABLES[name]
    assert published.num_rows == computed[name].num_rows
    for column in policy.count_columns:
        values = published.column(column).to_pylist()
        assert not [value for value in values if value is not None and 1 <= value <= THRESHOLD], column


@pytest.mark.parametrize("name", list(ANALYTICS_TABLES))
def test_published_tables_leave_no_suppressed_cell_alone_in_its_group(computed, name):
    policy = aggregates.SUPPRESSION_POLICIES[name]
    before = computed[name].to_pylist()
    after = _in_order_of(aggregates.publishable(name, computed[name]).to_pylist(), before, name)
    for grouping in policy.margins:  # every dimension of a two-way table
        groups = defaultdict(list)
        for old, new in zip(before, after):
            groups[tuple(old[key] for key in grouping)].append((old, new))
        for column in policy.count_columns:
            for rows in groups.values():
                hidden = [old for old, new in rows if new[column] is None]
                if len(hidden) == 1:
                    assert sum(1 for old, _ in rows if old[column] > 0) == 1, (grouping, column, hidden)
    for count, columns in policy.dependent.items():
        for old, new in zip(before, after):
            if new[count] is None:
                # A dependent count keeps a zero, which says nothing of the count it depends on.
                kept = [c for c in columns if new[c] is not None and not (c in policy.count_columns and old[c] == 0)]
                assert not kept, (count, kept)


def _in_order_of(published: list[dict], computed: list[dict], name: str) -> list[dict]:
    """The published rows in the order of the computed ones (pharmacy re-sorts by published rank)."""
    keys = [column for column in ANALYTICS_TABLES[name].names if ANALYTICS_TABLES[name].field(column).type == pa.string()]
    by_key = {tuple(row[key] for key in keys): row for row in published}
    assert len(by_key) == len(published) == len(computed)
    return [by_key[tuple(row[key] for key in keys)] for row in computed]


def test_the_threshold_is_configurable(computed):
    table = computed["patient_demographics"]
    strict = aggregates.publishable("patient_demographics", table, threshold=500).column("patients").to_pylist()
    assert not [value for value in strict if value is not None and 1 <= value <= 500]
    assert (
        aggregates.publishable("patient_demographics", table, threshold=0)
        .column("patients")
        .equals(table.column("patients"))
    )


def test_small_cells_of_the_odd_feed_are_suppressed(computed):
    published = aggregates.publishable("hospital_utilization", computed["hospital_utilization"])
    tiny = [row for row in published.to_pylist() if row["sending_facility"] == "TINY_CLINIC"]
    assert tiny and all(row["messages"] is None and row["suppressed_cells"] > 0 for row in tiny)


def test_empty_inputs_give_empty_tables_with_their_schemas(file_token):
    computed = aggregates.compute_all({}, {}, None, file_token)
    for name, table in computed.items():
        assert table.num_rows == 0 and table.schema == ANALYTICS_TABLES[name], name
        assert aggregates.publishable(name, table).schema == ANALYTICS_TABLES[name]


def test_null_values_everywhere_are_counted_under_null_keys(file_token):
    deid = {name: pa.Table.from_pylist([{}] * 3, schema=schema) for name, schema in DEID_HL7_TABLES.items()}
    deid["dicom_images"] = pa.Table.from_pylist([{}] * 3, schema=DEID_DICOM_IMAGES)
    phi = {name: pa.Table.from_pylist([{}] * 3, schema=schema) for name, schema in phi_tables.TABLES.items()}
    empty_validation = pa.Table.from_pylist([{}] * 3, schema=MESSAGE_VALIDATION)
    computed = aggregates.compute_all(deid, phi, empty_validation, lambda name: None if name is None else "t")
    for name, table in computed.items():
        assert table.schema == ANALYTICS_TABLES[name], name
    (utilization,) = computed["hospital_utilization"].to_pylist()
    assert (utilization["sending_facility"], utilization["month"], utilization["messages"]) == (None, None, 3)
    assert computed["patient_demographics"].num_rows == 0  # no patient token, no patient
    assert computed["imaging"].to_pylist()[0]["images"] == 3


def test_unknown_table_names_are_refused(file_token):
    with pytest.raises(ValueError, match="imagery"):
        aggregates.compute("imagery", {}, {}, None, file_token)
    with pytest.raises(ValueError, match="imagery"):
        aggregates.publishable("imagery", pa.table({}))


def test_summaries_of_part_groups_combine_to_the_tables_of_the_whole(computed, deid, phi, checked, file_token):
    """The analytics job summarizes each part group in its own task; the combination must not
    depend on how the files were grouped (patients recur across files, so across groups)."""
    files = sorted(set(phi["hl7_messages"]["source_file"].to_pylist()) | set(phi["hl7_errors"]["source_file"].to_pylist()))
    groups = [files[start::3] for start in range(3)]
    summaries_of_groups = []
    for group in groups:
        tokens = pa.array([file_token(name) for name in group])
        names = pa.array(group)
        deid_part = {name: _rows_of(deid[name], "source_file_token", tokens) for name in DEID_HL7_TABLES}
        phi_part = {name: _rows_of(phi[name], "source_file", names) for name in ("hl7_messages", "hl7_errors")}
        validation_part = _rows_of(checked, "source_file_token", tokens)
        summaries_of_groups.append(aggregates.summarize_group(deid_part, phi_part, validation_part, file_token))
    assert all(summary["utilization"].num_rows for summary in summaries_of_groups)
    concatenated = {name: pa.concat_tables([s[name] for s in summaries_of_groups]) for name in summaries.SUMMARY_SCHEMAS}
    combined = aggregates.combine_all(concatenated, deid["dicom_images"])
    assert combined.keys() == computed.keys()
    for name, table in computed.items():
        assert combined[name].schema == table.schema, name
        for got, expected in zip(combined[name].to_pylist(), table.to_pylist(), strict=True):
            assert got == {k: pytest.approx(v) if isinstance(v, float) else v for k, v in expected.items()}, name


def test_later_groups_folded_into_a_kept_combination_give_the_tables_of_the_whole(deid, phi, checked, file_token):
    """A night folds its new groups into the combination the last run kept (`summaries.folded_sums`,
    `refreshed_latest`, `refolded_counts`):
    whatever the split, the tables are those of all the groups combined, to the last bit. Patients
    recur across groups, and a tie of years goes to the later group, as in one combination."""
    files = sorted(set(phi["hl7_messages"]["source_file"].to_pylist()) | set(phi["hl7_errors"]["source_file"].to_pylist()))
    groups = []
    for start in range(4):
        tokens, names = pa.array([file_token(name) for name in files[start::4]]), pa.array(files[start::4])
        deid_part = {name: _rows_of(deid[name], "source_file_token", tokens) for name in DEID_HL7_TABLES}
        phi_part = {name: _rows_of(phi[name], "source_file", names) for name in ("hl7_messages", "hl7_errors")}
        groups.append(aggregates.summarize_group(deid_part, phi_part, _rows_of(checked, "source_file_token", tokens), file_token))
    # The same patient in the first and the last group, same year, other gender: the last row wins.
    recurring = groups[0]["latest_patients"].slice(0, 1)
    groups[3]["latest_patients"] = pa.concat_tables([
        groups[3]["latest_patients"],
        recurring.set_column(2, "patient_gender", pa.array(["X" if recurring["patient_gender"][0].as_py() != "X" else "Y"])),
    ])

    def concatenated(parts):
        return {name: pa.concat_tables([part[name] for part in parts]) for name in summaries.SUMMARY_SCHEMAS}

    whole = aggregates.combine_all(concatenated(groups), deid["dicom_images"])
    assert aggregates.combine_all(summaries.reduced(concatenated(groups)), deid["dicom_images"], one_row_per_patient=True) == whole
    for split in range(1, len(groups) + 1):
        kept = summaries.reduced(concatenated(groups[:split]))
        later = concatenated(groups[split:]) if split < len(groups) else summaries.empty_summary()
        sums = summaries.folded_sums(kept, later)
        # Only the later patients' earlier rows are looked up; the counts move by what they replace.
        tokens = later["latest_patients"]["patient_token"].combine_chunks()
        earlier_rows = _rows_of(kept["latest_patients"], "patient_token", tokens)
        refreshed = summaries.refreshed_latest(earlier_rows, later["latest_patients"])
        counts = summaries.refolded_counts(summaries.patient_counts(kept["latest_patients"]), earlier_rows, refreshed)
        folded = {**sums, "latest_patients": summaries.SUMMARY_SCHEMAS["latest_patients"].empty_table()}
        assert aggregates.combine_all(folded, deid["dicom_images"], one_row_per_patient=True, patient_counts=counts) == whole, split
        # The latest rows, the kept ones not replaced and the refreshed, are those of the whole.
        unchanged = kept["latest_patients"].filter(pc.invert(pc.is_in(kept["latest_patients"]["patient_token"], value_set=tokens)))
        assert _by_patient(pa.concat_tables([unchanged, refreshed])) == _by_patient(summaries.reduced(concatenated(groups))["latest_patients"])
    genders = whole["patient_demographics"].column("patient_gender").to_pylist()
    assert "X" in genders or "Y" in genders


def _by_patient(latest: pa.Table) -> dict:
    return {row["patient_token"]: row for row in latest.to_pylist()}


def _rows_of(table: pa.Table, column: str, values: pa.Array) -> pa.Table:
    return table.filter(pc.is_in(table[column], value_set=values))


@pytest.mark.parametrize("seed", range(5))
def test_quantiles_from_value_counts_are_numpys_over_the_values(seed):
    rng = np.random.default_rng(seed)
    values = np.round(rng.normal(100, 15, size=rng.integers(1, 400)), rng.integers(0, 2))
    distinct, counts = np.unique(values, return_counts=True)
    for q in (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0):
        assert summaries._quantile(distinct, counts, q) == pytest.approx(np.quantile(values, q)), q
