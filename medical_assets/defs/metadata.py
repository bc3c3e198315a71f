"""Dagster metadata for published tables: counts, schema, location, and previews free of patient data."""

from collections import Counter

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from medical_assets.columns import catalog_description
from medical_assets.storage import Location, read_table


def table_metadata(location: Location, schema: pa.Schema, row_count: int) -> dict:
    return {"dagster/row_count": row_count, "dagster/column_schema": column_schema(schema), "dagster/uri": location.uri}


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    """The catalog's columns: name, type, and where each comes from (and, in deid/, its treatment),
    read from the same field declarations the code writes and checks."""
    return dg.TableSchema(
        columns=[dg.TableColumn(field.name, str(field.type), description=catalog_description(field)) for field in schema]
    )


def value_counts(location: Location, column: str) -> Counter:
    """Rows per value of a column that identifies no patient (type, facility, error); "(empty)" for null."""
    values = read_table(location, columns=[column]).column(column)  # that column alone: tables run to GBs
    counted = pc.value_counts(values.cast(pa.string()) if not pa.types.is_string(values.type) else values)
    return Counter(
        {"(empty)" if value is None else value: count
         for value, count in zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist())}
    )  # fmt: skip


def count_preview(location: Location, column: str, limit: int = 20) -> dg.MetadataValue:
    """A markdown table of row counts per value of a column that identifies no patient (type, facility, error)."""
    counts = value_counts(location, column)
    lines = [f"| {column} | rows |", "| --- | ---: |"]
    lines += [f"| {value} | {count:,} |" for value, count in counts.most_common(limit)]
    if len(counts) > limit:
        lines.append(f"| ({len(counts) - limit} more) | |")
    return dg.MetadataValue.md("\n".join(lines))
