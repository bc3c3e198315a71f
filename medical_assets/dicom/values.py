"""An element's value as text or a number, DICOM's padding removed; None where the value is not one."""

from __future__ import annotations

import math

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def text(dataset: Dataset, keyword: str) -> str | None:
    """The element's value as the file has it, padding removed; several values joined by backslashes."""
    try:
        value = dataset.get(keyword)
        if value is None or isinstance(value, bytes | bytearray):
            return None
        if isinstance(value, MultiValue | list | tuple):
            text = "\\".join(str(item) for item in value)
        else:
            text = str(value)
    except Exception:
        return None
    text = text.strip(" \x00")
    return text or None


def integer(dataset: Dataset, keyword: str) -> int | None:
    """The element's first value as an int32, or None when absent or not a whole number."""
    try:
        value = _first_value(dataset, keyword)
        if value is None or isinstance(value, bytes | bytearray) or value == "":
            return None
        number = int(value) if not isinstance(value, float) or value.is_integer() else None
    except Exception:
        return None
    if number is None or not _INT32_MIN <= number <= _INT32_MAX:
        return None
    return number


def decimal(dataset: Dataset, keyword: str) -> float | None:
    """The element's first value as a float64, or None when absent or not a finite number."""
    try:
        value = _first_value(dataset, keyword)
        if value is None or isinstance(value, bytes | bytearray) or value == "":
            return None
        number = float(value)
    except Exception:
        return None
    return number if math.isfinite(number) else None


def decimals(dataset: Dataset, keyword: str) -> list[float] | None:
    """Every value as float64, or None when absent or when any value is not a finite number."""
    try:
        value = dataset.get(keyword)
        if value is None or isinstance(value, bytes | bytearray) or value == "":
            return None
        items = [value] if isinstance(value, str) or not hasattr(value, "__len__") else list(value)
        numbers = [float(item) for item in items]
    except Exception:
        return None
    if not numbers or not all(math.isfinite(number) for number in numbers):
        return None
    return numbers


def value_text(value: object) -> str | None:
    """A value as text without DICOM's padding; None when absent or empty."""
    if value is None:
        return None
    text = str(value).strip().rstrip("\0").strip()
    return text or None


def value_texts(value: object) -> list[str]:
    """Each of a value's values as text, as written; none for an absent value."""
    if value is None:
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [str(item) for item in value]
    return [str(value)]


def _first_value(dataset: Dataset, keyword: str):
    value = dataset.get(keyword)
    if isinstance(value, str | bytes | bytearray) or value is None:
        return value
    try:
        return value[0] if len(value) else None
    except TypeError:
        return value
