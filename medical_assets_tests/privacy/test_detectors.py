"""Pattern detectors: structured identifiers of anyone, found by their shape, and common values that only look like one."""

import pyarrow as pa
import pytest

from medical_assets.privacy.detectors import (
    find_structured_identifiers,
    structured_identifier_kinds,
    structured_identifier_mask,
)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("call (410) 555-0181 after 5", "phone"),
        ("fax: 410.555.0181", "phone"),
        ("+1 410-555-0181", "phone"),
        ("1-410-555-0181", "phone"),
        ("410 555 0181", "phone"),
        ("tel 4105550181", "phone"),
        ("SSN 219-09-9999", "ssn"),
        ("ssn: 219099999", "ssn"),
        ("219 09 9999", "ssn"),
        ("wrote to jane.doe+x@mail.example.org", "email"),
        ("see https://example.org/patients/42", "url"),
        ("www.janedoe-family.net", "url"),
        ("from 192.168.10.23", "ip_address"),
        ("host 2001:db8:85a3::8a2e:370:7334", "ip_address"),
        ("seen 2023-07-14", "date"),
        ("20230714", "date"),
        ("07/14/2023", "date"),
        ("7/4/23", "date"),
        ("14-Jul-2023", "date"),
        ("on July 14, 2023", "date"),
        ("202307141230", "date"),
        ("20230714123045", "date"),
        ("Baltimore, MD 21201", "zip_code"),
        ("21201-4321", "zip_code"),
        ("zip code: 21201", "zip_code"),
        ("MRN: 1234567", "record_number"),
        ("Acct# A123456", "record_number"),
        ("medical record number 00482-77", "record_number"),
    ],
)
def test_each_kind_is_found_in_its_written_forms(text, kind):
    assert kind in find_structured_identifiers(text)


@pytest.mark.parametrize(
    "text",
    [
        "2023",  # a bare year is what Safe Harbor keeps
        "2023-07",  # a month
        "20231332",  # eight digits that are no date
        "4105550181",  # ten digits alone: any ID or count
        "219099999",  # nine digits alone: an SSN only when named one
        "000-12-3456",  # SSN area 000 is never issued
        "666-12-3456",
        "912-12-3456",
        "219-00-9999",  # group 00
        "219-09-0000",  # serial 0000
        "21201",  # five digits alone: a count, not a ZIP
        "1.2.840.10008.5.1.4.1.1.2",  # a UID
        "2.25.4105550181219099999",
        "999.1.1.1",  # not an IP: octet over 255
        "software version 1.2.3.4",
        "12:30:45",
        "ADT^A01",
        "White blood cells",
        "Springfield General Hospital",
        "3.5-5.0",  # a reference range
        "0002-3227-30",  # an NDC code
        "120/80",
        "90+",
        "",
    ],
)
def test_common_values_that_look_like_identifiers_are_not_taken_for_one(text):
    assert find_structured_identifiers(text) == []


def test_kinds_are_listed_once_each_sorted():
    assert find_structured_identifiers("a@b.org, 410-555-0181, c@d.org") == ["email", "phone"]


def test_the_mask_marks_each_cell_and_nulls_are_false():
    values = pa.array(["a@b.org", None, "plain", "2023", "a@b.org", "seen 2023-07-14"])

    assert structured_identifier_mask(values).to_pylist() == [True, False, False, False, True, True]


def test_the_mask_reads_chunked_dictionary_and_empty_arrays():
    chunked = pa.chunked_array([pa.array(["x", "410-555-0181"]), pa.array(["y"])])
    dictionary = pa.array(["x", "410-555-0181", "x"]).dictionary_encode()

    assert structured_identifier_mask(chunked).to_pylist() == [False, True, False]
    assert structured_identifier_mask(dictionary).to_pylist() == [False, True, False]
    assert structured_identifier_mask(pa.array([], pa.string())).to_pylist() == []


def test_the_mask_agrees_with_the_text_detector_on_every_cell():
    cells = ["MRN: 1234567", "7/4/23", "fe80::1", "x" * 50, "12345", "1.2.3", "www.x.org", None, "Brown"]

    mask = structured_identifier_mask(pa.array(cells)).to_pylist()

    assert mask == [cell is not None and bool(find_structured_identifiers(cell)) for cell in cells]


def test_kinds_are_counted_by_cell():
    values = pa.array(["a@b.org", "a@b.org", "410-555-0181 or c@d.org", None, "none"])

    assert structured_identifier_kinds(values) == {"email": 3, "phone": 1}


def test_a_million_cells_are_checked_in_seconds():
    import time

    cells = pa.array([f"Result {i % 997} mg/dL" for i in range(1_000_000)] + ["call 410-555-0181"])
    start = time.perf_counter()
    mask = structured_identifier_mask(cells)
    elapsed = time.perf_counter() - start

    assert mask.to_pylist()[-1] is True and sum(mask.to_pylist()) == 1
    assert elapsed < 10
