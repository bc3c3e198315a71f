"""Dagster metadata for published tables: counts, schema, location, and previews free of patient data."""

from collections import Counter

import dagster as dg
import pyarrow as pa

from medical_assets.columns import catalog_description
from medical_assets.engine import value_counts as engine_value_counts
from medical_assets.storage import Location

PREVIEW_CACHE = ("_census", "value_counts")


def table_metadata(location: Location, schema: pa.Schema, row_count: int) -> dict:
    return {"dagster/row_count": row_count, "dagster/column_schema": column_schema(schema), "dagster/uri": location.uri}


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    """The catalog's columns: name, type, and where each comes from (and, in deid/, its treatment),
    read from the same field declarations the code writes and checks."""
    return dg.TableSchema(
        columns=[dg.TableColumn(field.name, str(field.type), description=catalog_description(field)) for field in schema]
    )


def value_counts(location: Location, column: str, cache: Location | None = None) -> Counter:
    """Rows per value of a column that identifies no patient (type, facility, error); "(empty)" for
    null. With `cache` (`preview_cache`), each file's counts are kept: only new files are read."""
    return engine_value_counts.value_counts(location, column, cache)


def preview_cache(settings) -> Location:
    """Where the previews' counts per file are kept: the PHI zone's cache."""
    return settings.zone("phi").child(*PREVIEW_CACHE)


def count_preview(location: Location, column: str, limit: int = 20, cache: Location | None = None) -> dg.MetadataValue:
    """A markdown table of row counts per value of a column that identifies no patient (type, facility, error)."""
    counts = value_counts(location, column, cache)
    lines = [f"| {column} | rows |", "| --- | ---: |"]
    lines += [f"| {value} | {count:,} |" for value, count in counts.most_common(limit)]
    if len(counts) > limit:
        lines.append(f"| ({len(counts) - limit} more) | |")
    return dg.MetadataValue.md("\n".join(lines))
