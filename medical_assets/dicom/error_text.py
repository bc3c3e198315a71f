"""Error texts fit to store: on one line, quoting no value of the file and naming no patient."""

from __future__ import annotations

import re

from pydicom.dataset import Dataset

from medical_assets.dicom.values import text

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def without_values(message: str) -> str:
    """pydicom's message with every quoted value replaced, so that no patient data reaches an error row."""
    return one_line(_QUOTED.sub("'…'", message))


def one_line(message: str, limit: int = 400) -> str:
    """The message on one line, its lines joined by semicolons (pydicom lists each plugin's failure on its own)."""
    lines = [" ".join(line.split()) for line in message.splitlines()]
    joined = ""
    for line in filter(None, lines):
        joined += ("" if not joined else " " if joined.endswith(":") else "; ") + line
    return joined if len(joined) <= limit else joined[: limit - 1] + "…"


def without_patient(message: str, dataset: Dataset) -> str:
    """The message with the patient's name and ID (and each name component) blanked out.

    Values of one or two characters are left alone: blanking them would garble the numbers.
    """
    name = text(dataset, "PatientName") or ""
    identifiers = {text(dataset, "PatientID") or "", name, *re.split(r"[\^=]", name)}
    for identifier in sorted(identifiers, key=len, reverse=True):
        if len(identifier) > 2:
            message = message.replace(identifier, "…")
    return message
