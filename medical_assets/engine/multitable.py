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


def pack_batches(
    batches: Sequence[tuple[Sequence[str], Mapping[str, pa.Table], Mapping[str, np.ndarray]]], schema: pa.Schema
) -> pa.Table:
    """`pack_files` of files read in batches (source files, their tables, each file's row count per
    table): a batch's tables become its rows' lists as they are, one chunk a batch. Copying a
    task's tables into one piece cost as much as a third of reading them."""
    packed = []
    for source_files, tables, rows in batches:
        columns = {"source_file": pa.array(source_files, pa.string())}
        for name in schema.names[1:]:
            struct_type = schema.field(name).type.value_type
            table = tables[name]
            offsets = np.zeros(len(source_files) + 1, np.int32)
            np.cumsum(rows[name], out=offsets[1:])
            values = pa.StructArray.from_arrays(
                [_one_piece(column) for column in table.columns], fields=list(struct_type)
            ) if table.num_columns else pa.array([], struct_type)
            columns[name] = pa.ListArray.from_arrays(pa.array(offsets), values)
        packed.append(pa.table(columns, schema=schema))
    return pa.concat_tables(packed) if packed else schema.empty_table()


def _one_piece(column: pa.ChunkedArray) -> pa.Array:
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def unpack(block: pa.Table, name: str, schema: pa.Schema) -> pa.Table:
    """All rows of table `name` in a packed block, with `schema`."""
    values = pc.list_flatten(block.column(name))
    if values.num_chunks == 0:
        return schema.empty_table()
    return pa.Table.from_struct_array(values).cast(schema)
