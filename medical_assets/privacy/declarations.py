"""How a value may leave the PHI zone: one declaration per published column, with its treatment.

The de-identified zone is an allow-list. A column exists in `deid/` only because a declaration made
with `declared` says how it is treated; the schemas of `deid/`, the de-identification (which
columns pass the vocabulary rule), the leak check (which columns hold vocabulary) and the catalog's
column descriptions are all read from these declarations. A PHI column that no declaration names
never leaves the PHI zone: a new HL7 field parsed tomorrow stays there until someone declares it.

The treatment travels in each Arrow field's metadata, next to the source and description every
column carries (`columns.column`), so any reader of a published schema can tell how each column
was made.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

import pyarrow as pa

from medical_assets.columns import TREATMENT_KEY, column


class Treatment(str, Enum):
    """What is done to a value on its way out of the PHI zone."""

    TOKENISE = "tokenise"  # a keyed one-way token (or AES-SIV when reversible tokens are on)
    CODE = "keep as code"  # a code from a table (gender, patient class, message type): kept when vocabulary
    NUMBER = "keep as number"  # a measurement or count that parses as a number; anything else is withheld
    GENERALISE = "generalise"  # reduced: ZIP to ZIP3, an age to its band or 90+, a stay to whole days
    YEAR = "year only"  # the year of a date, nothing finer
    SHIFT = "shift"  # a date moved by the patient's secret offset (date-shift profile only, else null)
    VOCABULARY = "vocabulary-only text"  # text kept only when it is vocabulary (see `privacy.vocabulary`)
    STATE = "state"  # a US state or territory (USPS code or name), else withheld
    DERIVED = "derived"  # computed by the pipeline from the record's shape (counts, validation), no source value


# Treatments whose values are text a sender typed or chose: published only as vocabulary.
VOCABULARY_TREATMENTS = frozenset({Treatment.CODE, Treatment.VOCABULARY})

def declared(name: str, type: pa.DataType, treatment: Treatment, source: str, description: str = "") -> pa.Field:
    """A published column: its name, type, treatment, the field it comes from (`PID-8`, `MSH-10`,
    `(0008,0060) Modality`) and a description for the catalog."""
    field = column(name, type, source, description)
    return field.with_metadata({**field.metadata, TREATMENT_KEY: treatment.value.encode()})


def treatment_of(field: pa.Field) -> Treatment:
    """The declared treatment of a published field; a field without one is a programming error."""
    raw = (field.metadata or {}).get(TREATMENT_KEY)
    if raw is None:
        raise ValueError(f"column {field.name!r} has no declared treatment: declare it with privacy.declarations.declared")
    return Treatment(raw.decode())


def columns_treated(schema: pa.Schema, treatments: Iterable[Treatment]) -> list[str]:
    """The columns of `schema` declared with one of `treatments`, in schema order."""
    wanted = set(treatments)
    return [field.name for field in schema if treatment_of(field) in wanted]


def vocabulary_columns(schema: pa.Schema) -> list[str]:
    """The columns whose values are published only when they are vocabulary."""
    return columns_treated(schema, VOCABULARY_TREATMENTS)


def undeclared(schema: pa.Schema) -> list[str]:
    """Columns of `schema` without a treatment: none may be published."""
    return [field.name for field in schema if TREATMENT_KEY not in (field.metadata or {})]
