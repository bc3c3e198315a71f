"""Where each column of a table comes from, carried in its Arrow field's metadata, and its catalog line.

A schema is declared once, with `column(...)` for each field: the HL7 field, DICOM attribute or
derivation behind the column (`source`) and, where the name does not say it, a short
`description`. Published columns add their privacy treatment (`privacy.declarations.declared`).
Parquet keeps field metadata, so a reader of any table can tell how each column was made, and the
catalog's column descriptions are read from the same declarations as the code.
"""

from __future__ import annotations

import pyarrow as pa

SOURCE_KEY = b"source"
DESCRIPTION_KEY = b"description"
TREATMENT_KEY = b"treatment"


def column(name: str, type: pa.DataType, source: str, description: str = "") -> pa.Field:
    """A column read from `source` (`PID-8`, `MSH-10`, `(0008,0060) Modality`, or "derived"),
    with a description for the catalog when its name does not say enough."""
    if not source:
        raise ValueError(f"column {name!r} needs a source: the field it is read from, or how it is derived")
    metadata = {SOURCE_KEY: source.encode()}
    if description:
        metadata[DESCRIPTION_KEY] = description.encode()
    return pa.field(name, type, metadata=metadata)


def source_of(field: pa.Field) -> str:
    """The field's source as declared; "" for a field made without `column`."""
    return _text(field, SOURCE_KEY)


def description_of(field: pa.Field) -> str:
    return _text(field, DESCRIPTION_KEY)


def catalog_description(field: pa.Field) -> str:
    """One line for a catalog: source, description and, for a published column, its treatment,
    e.g. "PID-8: Administrative sex. Treatment: keep as code."."""
    source, description, treatment = source_of(field), description_of(field), _text(field, TREATMENT_KEY)
    parts = [f"{source}: {description}" if source and description else source or description]
    if treatment:
        parts.append(f"Treatment: {treatment}")
    return " ".join(_sentence(part) for part in parts if part)


def _text(field: pa.Field, key: bytes) -> str:
    return (field.metadata or {}).get(key, b"").decode()


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "?", "!")) else f"{text}."
