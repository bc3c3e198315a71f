"""Who a DICOM image's patient is, and which of them are 90 or older, as the HL7 side counts them.

The HL7 and DICOM tables join on the patient token, so the per-patient rules must agree across
them: an image whose PatientAge is 090Y or more makes its patient "90+" in HL7 as well (no birth
year, no numeric age), and an HL7 message at 90+ removes the PatientAge of the patient's images.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from medical_assets.privacy.pseudonyms import ISSUER_SCOPE, patient_identity

_AGE = re.compile(r"\s*([0-9]{1,3})\s*([DWMY])\s*")


def age_is_over_89(patient_age: str | None) -> bool:
    """Whether a DICOM AS value (`089Y`, `090Y`, `1000D`...) says 90 years or more."""
    if not patient_age:
        return False
    match = _AGE.fullmatch(str(patient_age))
    if match is None:
        return False
    number, unit = int(match.group(1)), match.group(2)
    days = {"D": 1, "W": 7, "M": 30.4375, "Y": 365.25}[unit]
    return number * days >= 90 * 365.25


def dicom_patient_identity(patient_id: str | None, issuer: str | None, institution: str | None, scope: str = ISSUER_SCOPE) -> str | None:
    """A DICOM patient: PatientID with IssuerOfPatientID, else the institution's name."""
    return patient_identity(patient_id, issuer if (issuer or "").strip() else institution, scope)


def dicom_census_of_ages(images: pa.Table, scope: str = ISSUER_SCOPE) -> dict[str, int | None]:
    """The patients of PHI dicom_images rows whose PatientAge is 90 years or more, with the earliest
    study year at which it is (None when the study has no date)."""
    if not {"patient_id", "patient_age"} <= set(images.column_names):
        return {}
    old = images.filter(pc.fill_null(pc.match_substring_regex(images.column("patient_age"), r"^\s*[0-9]"), False))
    columns = {name: old.column(name).to_pylist() if name in old.column_names else [None] * old.num_rows
               for name in ("patient_id", "patient_id_issuer", "institution_name", "patient_age", "study_date")}
    pairs = (
        (dicom_patient_identity(patient_id, issuer, institution, scope), _year_of(study_date))
        for patient_id, issuer, institution, age, study_date in zip(*columns.values())
        if age_is_over_89(age)
    )
    return earliest_years((patient, year) for patient, year in pairs if patient is not None)


def earliest_years(pairs: Iterable[tuple[str, int | None]]) -> dict[str, int | None]:
    """Each patient's earliest year among (patient, year) pairs; an unknown year (None) wins, since
    it withholds every numeric age of the patient."""
    found: dict[str, int | None] = {}
    for patient, year in pairs:
        if patient in found and (found[patient] is None or year is None):
            found[patient] = None
        else:
            found[patient] = min(found[patient], year) if patient in found else year
    return found


def merge_ages(*censuses: Mapping[str, int | None]) -> dict[str, int | None]:
    """Census results of several parts (or HL7 and DICOM) as one: the earliest year per patient."""
    return earliest_years(pair for census in censuses for pair in census.items())


def _year_of(study_date: str | None) -> int | None:
    return int(study_date[:4]) if study_date and study_date[:4].isdigit() else None


__all__ = ["age_is_over_89", "dicom_census_of_ages", "dicom_patient_identity", "earliest_years", "merge_ages"]
