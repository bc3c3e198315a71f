"""Carry several tables through one Ray Data dataset: one row per input file, one list column per table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def packed_schema(schemas: Mapping[str, pa.Schema]) -> pa.Schema:
    return pa.schema(
        [pa.field("source_file", pa.string())]
        + [pa.field(name, pa.list_(pa.struct(list(schema)))) for name, schema in schemas.items()]
    )


def pack(source_file: str, tables: Mapping[str, pa.Table], schema: pa.Schema) -> pa.Table:
    """One row holding every table of one file, so a single dataset can feed several outputs."""
    return pack_files([source_file], [tables], schema)


def pack_files(source_files: Sequence[str], tables: Sequence[Mapping[str, pa.Table]], schema: pa.Schema) -> pa.Table:
    """`pack` of each file, as one table of one row per file, built in one step per table."""
    columns = {"source_file": pa.array(source_files, pa.string())}
    for name in schema.names[1:]:
        struct_type = schema.field(name).type.value_type
        parts = [file_tables[name] for file_tables in tables]
        offsets = np.zeros(len(parts) + 1, np.int32)
        np.cumsum([part.num_rows for part in parts], out=offsets[1:])
        table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        values = pa.StructArray.from_arrays(
            [column.combine_chunks() for column in table.columns], fields=list(struct_type)
        ) if table.num_columns else pa.array([], struct_type)
        columns[name] = pa.ListArray.from_arrays(pa.array(offsets), values)
    return pa.table(columns, schema=schema)


def unpack(block: pa.Table, name: str, schema: pa.Schema) -> pa.Table:
    """All rows of table `name` in a packed block, with `schema`."""
    values = pc.list_flatten(block.column(name))
    if values.num_chunks == 0:
        return schema.empty_table()
    return pa.Table.from_struct_array(values).cast(schema)
