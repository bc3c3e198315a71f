"""The privacy report of a run (`deid/reports/privacy.html`) and its short Markdown form for metadata.

Both are pure renderers of one mapping, every key optional:

    {"run_id": str, "profile": str, "key_id": str,
     "withheld": [{"table": str, "column": str, "reason": str, "values": int}],
     "excluded_images": [{"reason": str, "images": int}],
     "suppressed_cells": [{"table": str, "cells": int}],
     "leak_checks": [{"check": str, "detectors": [str], "findings": int, "passed": bool}],
     "vocabulary_threshold": int, "suppression_threshold": int}

The report says what was kept back and why, in counts and names of tables, columns, reasons and
checks: never a value. Only these keys are read (anything else in the mapping is ignored, so a
value put there by mistake is not shown), a count must be a whole number, and every text is
escaped. The page is self-contained: inline style, no script, nothing loaded from elsewhere.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

_MISSING = "not reported"
_FIELDS = {
    "withheld": (("table", str), ("column", str), ("reason", str), ("values", int)),
    "excluded_images": (("reason", str), ("images", int)),
    "suppressed_cells": (("table", str), ("cells", int)),
    "leak_checks": (("check", str), ("detectors", list), ("findings", int), ("passed", bool)),
}

_STYLE = """
body { font-family: Liberation Sans, DejaVu Sans, Arial, sans-serif; margin: 0; color: #1f2933; background: #f5f7fa; }
header { background: #1f3a5f; color: #fff; padding: 16px 32px; }
header h1 { margin: 0 0 8px; font-size: 22px; }
header dl { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; margin: 0; font-size: 13px; }
header dd { margin: 0; font-family: DejaVu Sans Mono, monospace; }
main { max-width: 1100px; margin: 0 auto; padding: 8px 32px 32px; }
section { background: #fff; border-radius: 6px; padding: 12px 20px; margin: 16px 0; }
h2 { font-size: 18px; margin: 4px 0 8px; }
table { border-collapse: collapse; font-size: 14px; }
th, td { text-align: left; padding: 4px 12px; border-bottom: 1px solid #e4e9f0; }
td.count, th.count { text-align: right; font-variant-numeric: tabular-nums; }
tfoot td { font-weight: bold; }
.failed { color: #b42318; font-weight: bold; }
.passed { color: #2f7a3b; }
.note { font-size: 13px; color: #52606d; }
"""


# The column each table of the page sums in its "Total" row.
_TOTALS = {"withheld": "values", "excluded_images": "images", "suppressed_cells": "cells", "leak_checks": "findings"}


def render_privacy_report(report: Mapping) -> str:
    """The privacy report as one self-contained HTML page (no JavaScript; every text escaped)."""
    sections = [
        _section(
            "Values withheld",
            "Values of de-identified columns that were not declared safe, per column and reason.",
            _table_html(report, "withheld", ("Table", "Column", "Reason", "Values"), total_of=_TOTALS["withheld"]),
        ),
        _section(
            "Images excluded",
            "DICOM images kept out of the export, per reason.",
            _table_html(report, "excluded_images", ("Reason", "Images"), total_of=_TOTALS["excluded_images"]),
        ),
        _section(
            "Suppressed cells",
            f"Analytics cells suppressed: counts from 1 to {_threshold_text(report, 'suppression_threshold')}, "
            "and the cells that would let them be derived from a total.",
            _table_html(report, "suppressed_cells", ("Table", "Cells"), total_of=_TOTALS["suppressed_cells"]),
        ),
        _section(
            "Leak checks",
            "Scans of the de-identified zone for identifiers of the PHI zone.",
            _table_html(report, "leak_checks", ("Check", "Detectors", "Findings", "Result"), total_of=_TOTALS["leak_checks"]),
        ),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>medical-assets: privacy report</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"{_header_html(report)}\n<main>\n" + "\n".join(sections) + "\n</main>\n</body>\n</html>\n"
    )


def privacy_report_markdown(report: Mapping) -> str:
    """The report in a few Markdown table rows, for Dagster metadata."""
    withheld, excluded = _rows(report, "withheld"), _rows(report, "excluded_images")
    suppressed, checks = _rows(report, "suppressed_cells"), _rows(report, "leak_checks")
    failed = None if checks is None else [check["check"] for check in checks if not check["passed"]]
    lines = ["| Item | Value |", "| --- | --- |"]
    for label, key in (("Run id", "run_id"), ("Profile", "profile"), ("Key id", "key_id")):
        lines.append(f"| {label} | {_markdown(_text(report, key))} |")
    lines.append(f"| Values withheld | {_summary(withheld, 'values', ('table', 'column'), 'column')} |")
    lines.append(f"| Images excluded | {_summary(excluded, 'images', ('reason',), 'reason')} |")
    lines.append(f"| Suppressed cells | {_summary(suppressed, 'cells', ('table',), 'table')} |")
    if checks is None:
        lines.append(f"| Leak checks | {_MISSING} |")
    else:
        findings = sum(check["findings"] for check in checks)
        result = f"{len(checks) - len(failed)} of {len(checks)} passed, {findings} findings"
        if failed:
            result += "; failed: " + ", ".join(_markdown(name) for name in failed)
        lines.append(f"| Leak checks | {result} |")
    lines.append(f"| Vocabulary threshold | {_threshold_text(report, 'vocabulary_threshold')} |")
    lines.append(f"| Suppression threshold | {_threshold_text(report, 'suppression_threshold')} |")
    return "\n".join(lines) + "\n"


def printed_counts(report: Mapping) -> list[int]:
    """Every whole number the page of `report` prints (its counts and their totals): numbers of our own
    making, which the reports' leak check must not take for a numeric ID they happen to equal."""
    counts = _whole_numbers(report)
    for key, column in _TOTALS.items():
        counts += [sum(_whole_numbers([row.get(column) for row in report.get(key) or [] if isinstance(row, Mapping)]))]
    return counts


def _rows(report: Mapping, key: str) -> list[dict] | None:
    """The entries of a list section with only their known fields, checked; None when absent."""
    entries = report.get(key)
    if entries is None:
        return None
    if isinstance(entries, (str, bytes, Mapping)) or not isinstance(entries, Sequence):
        raise ValueError(f"privacy report: {key} must be a list of entries")
    return [_entry(key, position, entry) for position, entry in enumerate(entries)]


def _entry(key: str, position: int, entry: object) -> dict:
    if not isinstance(entry, Mapping):
        raise ValueError(f"privacy report: entry {position} of {key} is not a mapping")
    checked = {}
    for name, kind in _FIELDS[key]:
        value = entry.get(name)
        if kind is int:
            value = _count(value, f"{key}[{position}].{name}")
        elif kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"privacy report: {key}[{position}].{name} must be true or false")
        elif kind is list:
            value = [str(item) for item in value or ()]
        else:
            value = "" if value is None else str(value)
        checked[name] = value
    return checked


def _count(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"privacy report: {where} must be a whole number of 0 or more")
    return value


def _text(report: Mapping, key: str) -> str:
    value = report.get(key)
    return _MISSING if value is None or value == "" else str(value)


def _threshold_text(report: Mapping, key: str) -> str:
    value = report.get(key)
    return _MISSING if value is None else str(_count(value, key))


def _header_html(report: Mapping) -> str:
    entries = [
        ("Run id", _text(report, "run_id")),
        ("De-identification profile", _text(report, "profile")),
        ("Key id", _text(report, "key_id")),
        ("Vocabulary threshold", _threshold_text(report, "vocabulary_threshold")),
        ("Suppression threshold", _threshold_text(report, "suppression_threshold")),
    ]
    listed = "".join(f"<dt>{html.escape(label)}</dt><dd>{html.escape(value)}</dd>" for label, value in entries)
    return f"<header><h1>Privacy report</h1><dl>{listed}</dl></header>"


def _section(title: str, note: str, body: str) -> str:
    return f'<section><h2>{html.escape(title)}</h2>\n<p class="note">{html.escape(note)}</p>\n{body}\n</section>'


def _table_html(report: Mapping, key: str, headings: tuple[str, ...], total_of: str) -> str:
    rows = _rows(report, key)
    if rows is None:
        return f'<p class="note">{_MISSING.capitalize()}.</p>'
    if not rows:
        return '<p class="note">None.</p>'
    fields = [name for name, _ in _FIELDS[key]]
    head = "".join(
        f'<th class="count">{html.escape(h)}</th>' if _is_count(key, name) else f"<th>{html.escape(h)}</th>"
        for h, name in zip(headings, fields)
    )
    body = "".join("<tr>" + "".join(_cell(key, name, row[name]) for name in fields) + "</tr>" for row in rows)
    total = sum(row[total_of] for row in rows)
    span = fields.index(total_of)
    foot = f'<tr><td colspan="{span}">Total</td><td class="count">{total}</td>'
    foot += "<td></td>" * (len(fields) - span - 1) + "</tr>"
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody><tfoot>{foot}</tfoot></table>"


def _is_count(key: str, name: str) -> bool:
    return dict(_FIELDS[key])[name] is int


def _cell(key: str, name: str, value: object) -> str:
    if _is_count(key, name):
        return f'<td class="count">{value}</td>'
    if isinstance(value, bool):
        return '<td class="passed">passed</td>' if value else '<td class="failed">FAILED</td>'
    if isinstance(value, list):
        return f"<td>{html.escape(', '.join(value))}</td>"
    return f"<td>{html.escape(value)}</td>"


def _summary(rows: list[dict] | None, count: str, per: tuple[str, ...], noun: str) -> str:
    """E.g. "1520 in 3 columns": the total and how many distinct `per` it falls in."""
    if rows is None:
        return _MISSING
    total = sum(row[count] for row in rows)
    groups = len({tuple(row[name] for name in per) for row in rows if row[count]})
    return f"{total} in {groups} {noun}{'' if groups == 1 else 's'}" if total else "0"


def _markdown(text: str) -> str:
    """Text safe in a Markdown table cell: no pipe, line break, backtick or HTML."""
    text = " ".join(text.split())
    return html.escape(text).replace("|", "\\|").replace("`", "'")


def _whole_numbers(value: object) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, Mapping):
        return [n for item in value.values() for n in _whole_numbers(item)]
    if isinstance(value, list | tuple):
        return [n for item in value for n in _whole_numbers(item)]
    return []
