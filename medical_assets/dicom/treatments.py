"""How each `Treatment` the allow-list declares is applied to a data element: kept, converted, or removed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from medical_assets.dicom.attributes import Treatment, treatment_of
from medical_assets.dicom.values import value_text, value_texts
from medical_assets.privacy.pseudonyms import Pseudonymizer

UID_SYNTAX = re.compile(r"[0-9]+(\.[0-9]+)*")
AGE_STRING = re.compile(r"(\d{3})([DWMY])")  # AS: three digits and the unit
OLDEST_AGE = "090Y"  # Safe Harbor: every age over 89 in one group

_DICOM_UID_ROOT = "1.2.840.10008."


@dataclass(frozen=True)
class Context:
    """What treating an element needs: the keys, the profile, and the patient the data set is of."""

    pseudonymizer: Pseudonymizer
    profile: str
    date_offset_days: int  # 0 under safe_harbor
    patient_token: str = ""
    over_89: bool = False  # the patient is known to be 90 or older elsewhere
    vocabulary: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def new_uid(self, value: str) -> str:
        """The keyed replacement of a UID; well-known UIDs under the DICOM root stay."""
        value = value.strip().rstrip("\0")
        if not value or value.startswith(_DICOM_UID_ROOT):
            return value
        return self.pseudonymizer.uid(value)

    def date(self, value: str) -> str:
        """A DA value as the profile writes it; empty when it is not a date."""
        if self.profile == "date_shift":
            # ACR-NEMA wrote YYYY.MM.DD; anything after the date is not DA and is dropped.
            shifted, _ = _shifted_date(value.replace(".", ""), self.date_offset_days)
            return shifted
        year = _year(value)
        return f"{year}0101" if year else ""

    def date_time(self, value: str) -> str:
        """A DT value as the profile writes it: the date moved, or the year alone; empty when it is not one."""
        if self.profile == "date_shift":
            shifted, rest = _shifted_date(value, self.date_offset_days)
            return shifted + rest if shifted else ""
        year = _year(value)
        return f"{year}0101000000" if year else ""

    def time(self, value: str) -> str:
        return value if self.profile == "date_shift" else ""


def clean(dataset: Dataset, context: Context) -> None:
    """Keep the declared elements with their treatment, recursing into kept sequences; remove the rest."""
    for tag in list(dataset.keys()):
        treatment = None if tag.is_private else treatment_of(tag)
        if treatment is None:
            del dataset[tag]
            continue
        try:
            # Converting kept elements gives each its VR, which a data set read as implicit VR
            # lacks and an explicit VR transfer syntax needs when it is written.
            element = dataset[tag]
        except Exception:  # a value pydicom cannot convert cannot be checked either: drop it
            del dataset[tag]
            continue
        if not _KEEPERS[treatment](element, context):
            del dataset[tag]


_STRING_CODE_VRS = frozenset({"CS", "SH", "LO"})
# A code, a vendor or model name, a software version: letters, digits and a little punctuation.
_CODE_SYNTAX = re.compile(r"[A-Za-z0-9 _.:/+()\-]{0,64}")
_BINARY_NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT"})
_NUMBER_SYNTAX = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "US", "SS"})


def _keep_code(element: DataElement, context: Context) -> bool:
    texts = value_texts(element.value)
    return element.VR in _STRING_CODE_VRS and all(_CODE_SYNTAX.fullmatch(text.strip()) for text in texts)


def _keep_number(element: DataElement, context: Context) -> bool:
    if element.VR in _BINARY_NUMBER_VRS:
        return True
    return element.VR in ("DS", "IS") and all(
        not text.strip() or _NUMBER_SYNTAX.fullmatch(text.strip()) for text in value_texts(element.value)
    )


def _keep_binary(element: DataElement, context: Context) -> bool:
    return element.VR in _BINARY_VRS


def _keep_class_uid(element: DataElement, context: Context) -> bool:
    return element.VR == "UI" and all(
        UID_SYNTAX.fullmatch(text.strip().rstrip("\0")) for text in value_texts(element.value) if text
    )


def _replace_uid(element: DataElement, context: Context) -> bool:
    if element.VR != "UI":
        return False
    element.value = _each(element.value, context.new_uid)
    return True


def _generalise_date(element: DataElement, context: Context) -> bool:
    convert = {"DA": context.date, "DT": context.date_time, "TM": context.time}.get(element.VR)
    if convert is None:  # a date attribute written with another VR: nothing safe to keep
        return False
    element.value = _each(element.value, lambda value: convert(value.strip()))
    return True


def _cap_age(element: DataElement, context: Context) -> bool:
    if context.over_89:  # HL7 shows the patient as 90+: any age here would narrow the birth year
        return False
    age = _capped_age(value_text(element.value))
    if age is None:
        return False
    element.value = age
    return True


def _patient_token(element: DataElement, context: Context) -> bool:
    element.value = context.patient_token
    return True


def _empty(element: DataElement, context: Context) -> bool:
    element.clear()
    return True


def _vetted_text(element: DataElement, context: Context) -> bool:
    allowed = context.vocabulary.get(keyword_for_tag(element.tag), frozenset())
    texts = [text.strip() for text in value_texts(element.value)]
    return bool(texts) and all(text in allowed for text in texts)


def _walk_sequence(element: DataElement, context: Context) -> bool:
    if element.VR != "SQ":
        return False
    for item in element.value or ():
        clean(item, context)
    return True


_KEEPERS = {
    Treatment.CODE: _keep_code,
    Treatment.NUMBER: _keep_number,
    Treatment.BINARY: _keep_binary,
    Treatment.CLASS_UID: _keep_class_uid,
    Treatment.NEW_UID: _replace_uid,
    Treatment.DATE: _generalise_date,
    Treatment.AGE: _cap_age,
    Treatment.PATIENT_TOKEN: _patient_token,
    Treatment.EMPTY: _empty,
    Treatment.VOCABULARY: _vetted_text,
    Treatment.SEQUENCE: _walk_sequence,
}


def _each(value, convert):
    """`convert` over a single value or each of a multi-valued one; an empty value stays empty."""
    if value is None or value == "":
        return value
    if isinstance(value, MultiValue | list | tuple):
        return [convert(str(item)) for item in value]
    return convert(str(value))


def _year(value: str) -> str | None:
    return value[:4] if len(value) >= 4 and value[:4].isdigit() else None


_DATE_PREFIX = re.compile(r"(\d{4})(\d{2})?(\d{2})?")


def _shifted_date(value: str, days: int) -> tuple[str, str]:
    """The date that starts `value` (YYYY, YYYYMM or YYYYMMDD) moved by `days` at its own
    precision, and the rest of the value (a DT's time, fraction and UTC offset); ("", "") when
    the value does not start with a date."""
    match = _DATE_PREFIX.match(value)
    if not match:
        return "", ""
    year, month, day = match.group(1), match.group(2) or "01", match.group(3) or "01"
    try:
        moved = date(int(year), int(month), int(day)) + timedelta(days=days)
    except (ValueError, OverflowError):
        return "", ""
    digits = f"{moved.year:04d}{moved.month:02d}{moved.day:02d}"
    return digits[: match.end()], value[match.end() :]


def _capped_age(value: str | None) -> str | None:
    """Patient's Age (AS) with ages over 89 years as 090Y; None when it is not an age string."""
    match = AGE_STRING.fullmatch((value or "").strip())
    if not match:
        return None
    if match.group(2) == "Y" and int(match.group(1)) > 89:
        return OLDEST_AGE
    return match.group(0)

