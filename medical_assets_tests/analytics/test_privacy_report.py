"""The privacy report: counts and names of columns only, escaped, self-contained, no script."""

import re
from html.parser import HTMLParser

import pytest

from medical_assets.analytics.privacy_report import printed_counts, privacy_report_markdown, render_privacy_report

REPORT = {
    "run_id": "3c1e0b5a-run",
    "profile": "safe_harbor",
    "key_id": "k-2f9c41",
    "withheld": [
        {"table": "hl7_messages", "column": "sending_facility", "reason": "below vocabulary threshold", "values": 17},
        {"table": "hl7_lab_results", "column": "units", "reason": "not declared safe", "values": 1203},
        {"table": "hl7_lab_results", "column": "units", "reason": "free text", "values": 0},
    ],
    "excluded_images": [{"reason": "burned-in annotation", "images": 4}, {"reason": "unknown SOP class", "images": 2}],
    "suppressed_cells": [{"table": "hospital_utilization", "cells": 9}, {"table": "pharmacy", "cells": 31}],
    "leak_checks": [
        {"check": "deid parquet", "detectors": ["mrn", "name", "ssn"], "findings": 0, "passed": True},
        {"check": "reports", "detectors": ["name"], "findings": 2, "passed": False},
    ],
    "vocabulary_threshold": 11,
    "suppression_threshold": 10,
}


class _Page(HTMLParser):
    """Text of each table cell by section title, tags seen, and any URL the markup would load."""

    def __init__(self):
        super().__init__()
        self.tags, self.sources, self.cells = set(), [], {}
        self._section, self._in_h2, self._cell = None, False, None

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attrs = dict(attrs)
        self.sources += [value for name, value in attrs.items() if name in ("src", "href") and value]
        self._in_h2 = tag == "h2"
        if tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.cells.setdefault(self._section, []).append(self._cell)
            self._cell = None
        self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2:
            self._section = data
        if self._cell is not None:
            self._cell += data


def _parsed(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


def test_the_page_shows_every_count_with_its_table_column_and_reason():
    parsed = _parsed(render_privacy_report(REPORT))
    withheld = parsed.cells["Values withheld"]
    assert withheld[:4] == ["Table", "Column", "Reason", "Values"]
    assert withheld[4:8] == ["hl7_messages", "sending_facility", "below vocabulary threshold", "17"]
    assert withheld[-2:] == ["Total", "1220"]
    assert parsed.cells["Images excluded"][-2:] == ["Total", "6"]
    assert parsed.cells["Suppressed cells"][2:6] == ["hospital_utilization", "9", "pharmacy", "31"]
    checks = parsed.cells["Leak checks"]
    assert checks[4:8] == ["deid parquet", "mrn, name, ssn", "0", "passed"]
    assert checks[8:12] == ["reports", "name", "2", "FAILED"]


def test_the_header_names_the_run_profile_key_and_thresholds():
    page = render_privacy_report(REPORT)
    for label, value in [
        ("Run id", "3c1e0b5a-run"),
        ("De-identification profile", "safe_harbor"),
        ("Key id", "k-2f9c41"),
        ("Vocabulary threshold", "11"),
        ("Suppression threshold", "10"),
    ]:
        assert f"<dt>{label}</dt><dd>{value}</dd>" in page


def test_the_page_is_self_contained_and_runs_no_script():
    parsed = _parsed(render_privacy_report(REPORT))
    assert "script" not in parsed.tags and not parsed.sources
    assert "<!DOCTYPE html>" in render_privacy_report(REPORT)


def test_every_text_is_escaped():
    """Attack: a column or check name carrying markup (a name is free text from the producer) runs
    script in the report or breaks out of the Markdown table."""
    hostile = {
        "run_id": "<script>alert(1)</script>",
        "withheld": [{"table": "t", "column": "<img src=x onerror=alert(1)>", "reason": "a|b", "values": 1}],
        "leak_checks": [{"check": "x\n| forged | row |", "detectors": ["<b>"], "findings": 1, "passed": False}],
    }
    page = render_privacy_report(hostile)
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    markdown = privacy_report_markdown(hostile)
    assert "<script>" not in markdown
    assert all(line.startswith("| ") and line.endswith(" |") for line in markdown.splitlines())
    assert "\\| forged \\| row \\|" in markdown


def test_keys_outside_the_structure_are_never_shown():
    """Attack: a producer puts a value (a patient's name) beside the counts; the report must not
    show what it was not built to show."""
    report = {
        **REPORT,
        "examples": ["DOE^JANE"],
        "withheld": [{**REPORT["withheld"][0], "sample": "DOE^JANE"}],
    }
    assert "DOE" not in render_privacy_report(report)
    assert "DOE" not in privacy_report_markdown(report)


@pytest.mark.parametrize(
    "report",
    [
        {"withheld": [{"table": "t", "column": "c", "reason": "r", "values": "DOE^JANE"}]},
        {"withheld": [{"table": "t", "column": "c", "reason": "r", "values": -1}]},
        {"excluded_images": [{"reason": "r", "images": 2.5}]},
        {"suppressed_cells": [{"table": "t", "cells": True}]},
        {"leak_checks": [{"check": "c", "detectors": [], "findings": 0, "passed": "yes"}]},
        {"suppressed_cells": "pharmacy"},
        {"suppression_threshold": "ten"},
    ],
)
def test_a_count_that_is_not_a_whole_number_is_refused_without_echoing_it(report):
    with pytest.raises(ValueError) as refused:
        render_privacy_report(report)
    assert "DOE" not in str(refused.value)
    with pytest.raises(ValueError):
        privacy_report_markdown(report)


def test_an_empty_report_says_what_was_not_reported():
    page = render_privacy_report({})
    assert page.count("Not reported.") == 4 and "<table>" not in page
    assert "None." in render_privacy_report({"withheld": [], "leak_checks": []})
    markdown = privacy_report_markdown({})
    assert "| Values withheld | not reported |" in markdown and "| Leak checks | not reported |" in markdown


def test_markdown_sums_up_each_section():
    markdown = privacy_report_markdown(REPORT)
    lines = markdown.splitlines()
    assert lines[:2] == ["| Item | Value |", "| --- | --- |"]
    assert "| Values withheld | 1220 in 2 columns |" in lines
    assert "| Images excluded | 6 in 2 reasons |" in lines
    assert "| Suppressed cells | 40 in 2 tables |" in lines
    assert "| Leak checks | 1 of 2 passed, 2 findings; failed: reports |" in lines
    assert "| Suppression threshold | 10 |" in lines and "| Vocabulary threshold | 11 |" in lines
    assert re.search(r"^\| Run id \| 3c1e0b5a-run \|$", markdown, re.M)


def test_the_counts_the_page_prints_are_exactly_its_whole_numbers():
    # The reports' leak check lets a numeric ID through where it equals one of these: they must be
    # every number of the page (counts, totals, thresholds), and nothing else.
    page = render_privacy_report(REPORT)
    text = re.sub(r"<style>.*?</style>", "", page, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", text).replace(REPORT["run_id"], "").replace(REPORT["key_id"], "")
    printed = {int(number) for number in re.findall(r"(?<![\w.-])\d+(?![\w.-])", text)}
    wording = {1}  # "counts from 1 to N": the page's own words
    assert printed - wording == set(printed_counts(REPORT))
    assert {17, 1203, 1220, 6, 40, 2, 11, 10} <= printed

