"""The engine's pure parts: grouping files into read tasks, and carrying several tables in one dataset."""

import pyarrow as pa
import pyarrow.fs as pafs

from medical_assets.engine import multitable
from medical_assets.engine.datasources import LandingFilesDatasource, balanced_groups
from medical_assets.engine.jobs import read_task_count
from medical_assets.sources.folder import LandingFile
from medical_assets.storage import read_whole_file


def _files(sizes):
    return [LandingFile(f"/f{i}", f"f{i}", size, None) for i, size in enumerate(sizes)]


def test_groups_are_balanced_by_size_and_keep_every_file():
    files = _files([100, 90, 10, 10, 10, 50, 40, 1, 1, 1])
    groups = balanced_groups(files, 3)
    assert len(groups) == 3
    assert sorted(f.path for g in groups for f in g) == sorted(f.path for f in files)
    totals = [sum(f.size_bytes for f in g) for g in groups]
    assert max(totals) - min(totals) <= 40


def test_never_more_groups_than_files():
    assert len(balanced_groups(_files([5, 5]), 8)) == 2
    assert balanced_groups([], 4) == []


def test_task_count_follows_cores_and_bytes():
    assert read_task_count(total_bytes=25 << 20, file_count=100, cpus=2) == 2
    assert read_task_count(total_bytes=2 << 30, file_count=1000, cpus=2) == 2
    assert read_task_count(total_bytes=5 << 30, file_count=1000, cpus=2) == 6
    assert read_task_count(total_bytes=5 << 30, file_count=1000, cpus=8) == 8
    assert read_task_count(total_bytes=1 << 30, file_count=1, cpus=2) == 1


def test_pack_and_unpack_round_trip_with_empty_tables():
    a = pa.schema([("x", pa.int64()), ("s", pa.string())])
    b = pa.schema([("y", pa.float64())])
    schema = multitable.packed_schema({"a": a, "b": b})
    first = multitable.pack("f1", {"a": pa.table({"x": [1, 2], "s": ["p", None]}, schema=a), "b": b.empty_table()}, schema)
    second = multitable.pack("f2", {"a": a.empty_table(), "b": pa.table({"y": [0.5]}, schema=b)}, schema)
    block = pa.concat_tables([first, second])

    assert block.schema.equals(schema)
    assert multitable.unpack(block, "a", a).to_pydict() == {"x": [1, 2], "s": ["p", None]}
    assert multitable.unpack(block, "b", b).to_pydict() == {"y": [0.5]}
    assert multitable.unpack(first, "b", b).schema.equals(b)


def test_pack_files_gives_one_row_per_file_as_pack_does():
    a = pa.schema([("x", pa.int64()), ("s", pa.string())])
    b = pa.schema([("y", pa.float64())])
    schema = multitable.packed_schema({"a": a, "b": b})
    files = {
        "f1": {"a": pa.table({"x": [1, 2], "s": ["p", None]}, schema=a), "b": b.empty_table()},
        "f2": {"a": a.empty_table(), "b": b.empty_table()},
        "f3": {"a": pa.table({"x": [3], "s": ["q"]}, schema=a).slice(0, 1), "b": pa.table({"y": [0.5]}, schema=b)},
    }

    packed = multitable.pack_files(list(files), list(files.values()), schema)

    one_by_one = pa.concat_tables([multitable.pack(name, tables, schema) for name, tables in files.items()])
    assert packed.schema.equals(schema) and packed.num_rows == 3
    assert packed.to_pylist() == one_by_one.to_pylist()


def test_a_read_task_yields_a_block_whenever_its_input_reaches_the_block_size(tmp_path):
    sizes = [300, 500, 200, 900, 100]
    files = []
    for index, size in enumerate(sizes):
        path = tmp_path / f"f{index}.bin"
        path.write_bytes(bytes([index]) * size)
        files.append(LandingFile(str(path), path.name, size, None))

    def lengths(batch):
        return pa.table({"name": [p.rsplit("/", 1)[-1] for _, p in batch], "length": [len(d) for d, _ in batch]})

    schema = pa.schema([("name", pa.string()), ("length", pa.int64())])
    source = LandingFilesDatasource(files, pafs.LocalFileSystem(), lengths, schema, block_input_bytes=800)
    (task,) = source.get_read_tasks(1)
    blocks = list(task())
    # 300 + 500 reach 800; 200 + 900 pass it; 100 is what is left.
    assert [block["name"].to_pylist() for block in blocks] == [["f0.bin", "f1.bin"], ["f2.bin", "f3.bin"], ["f4.bin"]]
    assert [length for block in blocks for length in block["length"].to_pylist()] == sizes


def test_whole_files_read_alike_through_python_and_through_arrow(tmp_path):
    data = bytes(range(256)) * 4099
    (tmp_path / "scan.dcm").write_bytes(data)
    local = pafs.LocalFileSystem()
    assert read_whole_file(local, str(tmp_path / "scan.dcm")) == data
    # Any other filesystem (an object store, a sub-tree) is read through Arrow's stream.
    assert read_whole_file(pafs.SubTreeFileSystem(str(tmp_path), local), "scan.dcm") == data

