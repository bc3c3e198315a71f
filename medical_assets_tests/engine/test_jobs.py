"""The Ray jobs on small corpora, checked against the same code run without Ray. Each job goes to
Ray's workers, however small its input; the tests that take `place` also run it in this process
(what a job on little input does by default) and expect the same result."""

import hashlib
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from medical_assets.config import IN_PROCESS_JOBS_VAR
from medical_assets.engine import jobs
from medical_assets.hl7 import parse_hl7_file
from medical_assets.hl7.tables import TABLES
from medical_assets.sources.folder import list_landing_files
from medical_assets.storage import TablePublication, read_table, resolve_location
from medical_assets.synthetic.hl7 import HL7CorpusSettings, file_name, render_file
from medical_assets_tests import hl7_samples

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def jobs_in_ray_workers(no_pipeline_environment, monkeypatch):
    monkeypatch.setenv(IN_PROCESS_JOBS_VAR, "0")


@pytest.fixture(params=["ray_workers", "this_process"])
def place(request, monkeypatch):
    """Where the test's jobs run: in Ray's workers, or in this process."""
    if request.param == "this_process":
        monkeypatch.setenv(IN_PROCESS_JOBS_VAR, "1")
    return request.param


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_generation_is_deterministic_and_skipped_when_already_there(shared_ray, tmp_path):
    settings = HL7CorpusSettings(total_messages=1_050, messages_per_file=500)
    first, second = tmp_path / "a", tmp_path / "b"

    result = jobs.generate_synthetic_hl7(settings, resolve_location(str(first)))
    jobs.generate_synthetic_hl7(settings, resolve_location(str(second)))

    assert result.generated and result.files == 3
    assert _digests(first) == _digests(second)
    again = jobs.generate_synthetic_hl7(settings, resolve_location(str(first)))
    assert not again.generated


def test_a_smaller_corpus_replaces_only_its_own_files(shared_ray, tmp_path):
    landing = resolve_location(str(tmp_path))
    jobs.generate_synthetic_hl7(HL7CorpusSettings(total_messages=1_500), landing)
    (tmp_path / "site_feed.hl7").write_bytes(hl7_samples.clean_feed())

    jobs.generate_synthetic_hl7(HL7CorpusSettings(total_messages=600), landing)

    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("_"))
    assert names == sorted([file_name(0), file_name(1), "site_feed.hl7"])


def test_parse_job_equals_the_parser_run_without_ray(shared_ray, tmp_path, place):
    landing = tmp_path / "landing"
    jobs.generate_synthetic_hl7(HL7CorpusSettings(total_messages=2_000, messages_per_file=300), resolve_location(str(landing)))
    (landing / "broken.hl7").write_bytes(hl7_samples.feed_with_broken_message())
    (landing / "empty.txt").write_bytes(b"")
    source = resolve_location(str(landing))
    files = list_landing_files(source, (".hl7", ".txt"))
    zone = resolve_location(str(tmp_path / "phi"))
    publication = TablePublication(zone)
    reports = []

    counts = jobs.parse_hl7_files(files, source.filesystem, publication, lambda c, s: reports.append(c))
    publication.commit(TABLES)

    expected = [parse_hl7_file((landing / f.relative_path).read_bytes(), f.path) for f in files]
    for name in TABLES:
        published = read_table(zone.child(name))
        direct = pa.concat_tables([e.tables()[name] for e in expected])
        assert published.num_rows == direct.num_rows == counts.get(name, 0), name
        order = [(c, "ascending") for c in ("source_file", "message_index")]
        assert published.sort_by(order).equals(direct.sort_by(order)), name
    assert counts["hl7_messages"] == 2_002 and counts["hl7_errors"] == 2
    assert counts["files"] == len(files) == reports[-1]["files"]
    parts = len(os.listdir(zone.child("hl7_messages").path))
    assert parts <= jobs.read_task_count(sum(f.size_bytes for f in files), len(files), 2, jobs.HL7_BYTES_PER_TASK)
    assert (parts == 1) == (place == "this_process"), "in this process the files make one part"


def test_dicom_job_equals_the_reader_run_without_ray(shared_ray, tmp_path, place):
    from medical_assets.dicom import read_dicom_file
    from medical_assets.dicom.tables import TABLES as DICOM_TABLES
    from medical_assets.synthetic.dicom import DicomCorpusSettings

    landing = tmp_path / "landing"
    result = jobs.generate_synthetic_dicom(DicomCorpusSettings(total_files=10), resolve_location(str(landing)))
    assert result.generated and result.files == 10
    (landing / "not_dicom.dcm").write_bytes(b"plain text")
    source = resolve_location(str(landing))
    files = list_landing_files(source, (".dcm",))
    zone = resolve_location(str(tmp_path / "phi"))
    publication = TablePublication(zone)

    counts = jobs.parse_dicom_files(files, source.filesystem, publication, lambda c, s: None)
    publication.commit(DICOM_TABLES)

    expected = [read_dicom_file((landing / f.relative_path).read_bytes(), f.path, with_thumbnail=True) for f in files]
    for name, attribute in (("dicom_images", "images"), ("dicom_thumbnails", "thumbnails"), ("dicom_errors", "errors")):
        published = read_table(zone.child(name)).sort_by("source_file")
        direct = pa.concat_tables([getattr(e, attribute) for e in expected]).sort_by("source_file")
        assert published.schema.equals(direct.schema), name
        for column in published.column_names:
            if pa.types.is_floating(published.schema.field(column).type):
                # numpy's summation order depends on memory alignment: equal to the last bits only.
                assert published[column].to_pylist() == pytest.approx(direct[column].to_pylist(), rel=1e-9), column
            else:
                assert published[column].equals(direct[column]), column
    assert counts["dicom_images"] == counts["dicom_thumbnails"] == 10 and counts["dicom_errors"] == 1


@pytest.mark.parametrize("in_process_bytes", [0, 8 << 20], ids=["in workers", "small: in the run's process"])
def test_the_leak_scan_in_workers_finds_what_the_scanner_finds_alone(shared_ray, tmp_path, monkeypatch, in_process_bytes):
    from medical_assets.engine import leak_jobs
    from medical_assets.engine.leak_jobs import scan_trees
    from medical_assets.engine.tasks import read_tables
    from medical_assets.privacy.leak_scanner import LeakScanner

    monkeypatch.setattr(leak_jobs, "IN_PROCESS_BYTES", in_process_bytes)
    monkeypatch.setenv(IN_PROCESS_JOBS_VAR, "1")
    jobs = []
    monkeypatch.setattr(leak_jobs, "read_tables", lambda *args: jobs.append(args) or read_tables(*args))
    from medical_assets.storage import write_table_atomically

    scanner = LeakScanner({"Okonkwo": "patient_family_name", "MRN0048213": "patient_id"})
    deid = resolve_location(str(tmp_path / "deid"))
    for part in range(40):  # more files than tasks, a leak in most of them
        notes = [f"row {row}" + (" seen by Okonkwo" if (part + row) % 7 == 0 else "") for row in range(50)]
        write_table_atomically(pa.table({"note": notes}), deid.child("hl7_messages", f"part-{part:05d}.parquet"))
    deid.child("reports").makedirs()
    deid.child("reports", "dashboard.html").write_bytes_atomically(b"<p>MRN0048213 &amp; Okonkwo</p>")
    deid.child("reports", "figure.txt").write_bytes_atomically(b"nothing to see")
    roots = [deid.child("hl7_messages"), deid.child("reports"), deid.child("never_published")]

    expected = [finding for root in roots for finding in scanner.scan_tree(root)]

    assert len(expected) > 40
    assert scan_trees(scanner, roots) == expected
    assert len(jobs) == (1 if in_process_bytes == 0 else 0)
    assert scan_trees(scanner, [deid.child("never_published")]) == []


def test_the_leak_scan_ships_its_scanner_through_the_object_store_not_in_each_read_task(shared_ray):
    """At 5,000,000 messages the scanner pickles to 762 MiB: copied into every read task, it took
    the run's process out of memory. The read function carries a reference, and no loaded scanner."""
    from medical_assets.engine.datasources import LandingFilesDatasource
    from medical_assets.engine.leak_jobs import _FINDINGS, _ScanFiles
    from medical_assets.privacy.leak_scanner import LeakScanner
    from medical_assets.sources.folder import LandingFile

    scanner = LeakScanner({f"MRN{index:08d}": "patient_id" for index in range(100_000)})
    scan = _ScanFiles(ray.put(scanner), {})
    scan([])  # loads the scanner, as a task's first block does
    files = [LandingFile(f"/nowhere/{index}.parquet", f"{index}.parquet", 1_000, None) for index in range(8)]
    tasks = LandingFilesDatasource(files, None, scan, _FINDINGS).get_read_tasks(4)
    scanner_bytes, task_bytes = len(ray.cloudpickle.dumps(scanner)), len(ray.cloudpickle.dumps(tasks[0]))
    assert scanner_bytes > 1_000_000  # 100,000 identifiers as 128-bit hashes: 17 bytes each
    assert task_bytes < 50_000, task_bytes


def _old_patient_message(control_id: str, sent: str) -> str:
    # Born 1 December 1935: 89 on 30 November 2025, 90 two days later.
    pid = "PID|1||MRNQXOLD^^^GH^MR||DOE^JANE||19351201|F"
    return f"MSH|^~\\&|APP|GENERAL_HOSPITAL|EMR|CARDIOLOGY|{sent}||ADT^A08^ADT_A08|{control_id}|P|2.5\r{pid}\r"


def test_deidentification_withholds_the_birth_year_of_a_patient_90_plus_in_another_part(shared_ray, tmp_path, place):
    from medical_assets.engine import deid_jobs
    from medical_assets.privacy.hl7_deid_tables import DEID_HL7_TABLES
    from medical_assets.privacy.keys import parse_key_ring
    from medical_assets.privacy.pseudonyms import Pseudonymizer, patient_identity

    zone = resolve_location(str(tmp_path / "phi"))
    settings = HL7CorpusSettings(total_messages=400, messages_per_file=40)
    files = [(render_file(settings, index), file_name(index)) for index in range(settings.file_count())]
    files[0] = (files[0][0] + _old_patient_message("OLD1", "20251130").encode(), files[0][1])  # 89, in part 0
    files[-1] = (files[-1][0] + _old_patient_message("OLD2", "20251202").encode(), files[-1][1])  # 90+, in part 1
    for part, half in enumerate([files[: len(files) // 2], files[len(files) // 2 :]]):
        parsed = [parse_hl7_file(data, name).tables() for data, name in half]
        for table in TABLES:
            folder = tmp_path / "phi" / table
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.concat_tables([p[table] for p in parsed]), str(folder / f"part-{part:05d}.parquet"))

    ring = parse_key_ring("e6c_RnVCBXidrmsWnAdfchXlFioZwR9OtTu1CNlJ-is")
    targets = {name: resolve_location(str(tmp_path / "deid")).child(name) for name in DEID_HL7_TABLES}
    counts = deid_jobs.deidentify_hl7(zone, targets, DEID_HL7_TABLES, ring, "safe_harbor", False, lambda c, e: None)

    messages = read_table(targets["hl7_messages"])
    assert counts["hl7_messages"] == messages.num_rows == 402
    token = Pseudonymizer(ring.current).token("patient", patient_identity("MRNQXOLD", "GH"))
    old = [row for row in messages.to_pylist() if row["patient_token"] == token]
    # The 89-year-old's row in the other part too: 90+ from the year of the first 90+ event, no birth year.
    assert [row["age_at_message"] for row in old] == ["90+", "90+"]
    assert [row["birth_year"] for row in old] == [None, None]


def test_analytics_job_summarizes_each_part_group_and_equals_the_tables_of_the_whole(shared_ray, tmp_path, place):
    """Part names as an incremental parse leaves them (not consecutive): the de-identified parts take
    the names of their PHI parts, and the analytics job joins the two zones part by part."""
    from medical_assets.analytics.aggregates import publish_all
    from medical_assets.analytics.tables import ANALYTICS_TABLES
    from medical_assets.engine import analytics_jobs, deid_jobs
    from medical_assets.privacy.hl7_deid import SOURCE_FILE_DOMAIN
    from medical_assets.privacy.hl7_deid_tables import DEID_HL7_TABLES
    from medical_assets.privacy.keys import parse_key_ring
    from medical_assets.privacy.pseudonyms import Pseudonymizer

    settings = HL7CorpusSettings(total_messages=900, messages_per_file=60)
    files = [(render_file(settings, index), file_name(index)) for index in range(settings.file_count())]
    files.append((b"MSH|^~\\&|broken", "feeds/broken.hl7"))
    part_names = ["part-00000.parquet", "part-00003.parquet", "part-00011.parquet"]
    for part, name in enumerate(part_names):
        parsed = [parse_hl7_file(data, path).tables() for data, path in files[part::3]]
        for table in TABLES:
            folder = tmp_path / "phi" / table
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.concat_tables([p[table] for p in parsed]), str(folder / name))
    ring = parse_key_ring("e6c_RnVCBXidrmsWnAdfchXlFioZwR9OtTu1CNlJ-is")
    phi, deid = resolve_location(str(tmp_path / "phi")), resolve_location(str(tmp_path / "deid"))
    targets = {name: deid.child(name) for name in DEID_HL7_TABLES}
    deid_jobs.deidentify_hl7(phi, targets, DEID_HL7_TABLES, ring, "safe_harbor", False, lambda c, e: None)
    assert sorted(p.name for p in (tmp_path / "deid" / "hl7_messages").iterdir()) == part_names

    analytics = {name: resolve_location(str(tmp_path / "analytics" / name)) for name in ANALYTICS_TABLES}
    counts = analytics_jobs.publish_analytics(deid, phi, analytics, "parquet", {}, ring.current, 5)

    whole_deid = {name: read_table(targets[name]) for name in DEID_HL7_TABLES}
    whole_phi = {name: read_table(phi.child(name)) for name in ("hl7_messages", "hl7_errors")}
    token = lambda path: Pseudonymizer(ring.current).token(SOURCE_FILE_DOMAIN, path)  # noqa: E731
    expected = publish_all(whole_deid, whole_phi, token, 5)
    for name, table in expected.items():
        published = pq.read_table(str(tmp_path / "analytics" / name))
        assert counts.get(name, 0) == table.num_rows, name
        for got, want in zip(published.to_pylist(), table.to_pylist(), strict=True):
            assert got == {k: pytest.approx(v) if isinstance(v, float) else v for k, v in want.items()}, name
    months = pq.read_table(str(tmp_path / "analytics" / "hospital_utilization")).column("month")
    assert months.null_count < len(months)  # every part found its PHI months
    assert pq.read_table(str(tmp_path / "analytics" / "data_quality_files")).num_rows == len(files)

    # The combination is kept: the same groups again fold nothing new in; with the file of its
    # latest rows lost, every group is combined again. Both publish the same tables.
    kept = tmp_path / "phi" / "_census" / "analytics"
    first = {name: pq.read_table(str(tmp_path / "analytics" / name)) for name in ANALYTICS_TABLES}
    latest = next(kept.glob("latest-*.arrow")).name
    assert sorted(p.name for p in kept.iterdir()) == ["combined.parquet", latest, f"{latest}.keys"]  # the file and its keys
    for lose_latest in (False, True):
        if lose_latest:
            next(kept.glob("latest-*.arrow")).unlink()
        lines = []
        analytics_jobs.publish_analytics(deid, phi, analytics, "parquet", {}, ring.current, 5, lines.append)
        expected_line = ("all 3 part group(s) combined" if lose_latest else
                         "0 part group(s) summarized and folded into the kept combination of 3")
        assert any(expected_line in line for line in lines), lines
        for name, table in first.items():
            assert pq.read_table(str(tmp_path / "analytics" / name)).equals(table), name
    assert len(list(kept.glob("latest-*.arrow"))) == 1


def _table_builds():
    """Two builds of the kind the reports use, each writing its own files from the inputs."""

    def summary(tables):
        return {"rows.txt": str(tables["numbers"].num_rows).encode()}

    def absent(tables):
        return {"absent.txt": b"none" if tables["never_published"] is None else b"some"}

    return [summary, absent]


def test_each_build_writes_its_own_files(shared_ray, tmp_path, place):
    from medical_assets.engine.analytics_jobs import Input, build_files

    numbers = resolve_location(str(tmp_path / "numbers"))
    numbers.makedirs()
    pq.write_table(pa.table({"n": list(range(7))}), numbers.child("part-00000.parquet").path)
    inputs = {"numbers": Input(numbers), "never_published": Input(resolve_location(str(tmp_path / "missing")))}
    target = resolve_location(str(tmp_path / "reports"))

    names = build_files(inputs, _table_builds(), target, here=place == "this_process")

    assert names == ["absent.txt", "rows.txt"]
    assert (tmp_path / "reports" / "rows.txt").read_bytes() == b"7"
    assert (tmp_path / "reports" / "absent.txt").read_bytes() == b"none"


def test_computed_tables_are_exported_and_an_empty_one_still_gets_a_file(shared_ray, tmp_path, place):
    from medical_assets.engine.analytics_jobs import Input, export_computed_tables

    numbers = resolve_location(str(tmp_path / "numbers"))
    numbers.makedirs()
    pq.write_table(pa.table({"n": list(range(5))}), numbers.child("part-00000.parquet").path)
    schemas = {"evens": pa.schema([("n", pa.int64())]), "none": pa.schema([("n", pa.int64())])}
    targets = {name: resolve_location(str(tmp_path / "out" / name)) for name in schemas}

    def compute(tables):
        evens = [n for n in tables["numbers"]["n"].to_pylist() if n % 2 == 0]
        return {"evens": pa.table({"n": evens}, schema=schemas["evens"]), "none": schemas["none"].empty_table()}

    counts = export_computed_tables(
        {"numbers": Input(numbers)}, compute, targets, schemas, "parquet", {"stamp": "yes"}, here=place == "this_process"
    )

    assert counts == {"evens": 3, "none": 0}
    evens = pq.read_table(str(tmp_path / "out" / "evens"))
    assert evens["n"].to_pylist() == [0, 2, 4] and evens.schema.metadata[b"stamp"] == b"yes"
    assert os.listdir(tmp_path / "out" / "none") == ["part-empty.parquet"]


def test_no_ray_remote_args_warning_is_filtered_for_the_whole_process_nor_escapes_a_job(shared_ray, tmp_path):
    """The engine passes max_retries through `ray_remote_args` (Ray 2.60 has no named parameter
    for it): its deprecation is silenced around those calls only, so other code still sees it."""
    import warnings

    from medical_assets.engine import analytics_jobs, deid_jobs, incremental, leak_jobs  # noqa: F401

    assert not any(pattern is not None and "ray_remote_args" in pattern.pattern for _, pattern, *_ in warnings.filters)
    (tmp_path / "a.txt").write_bytes(b"a")
    source = resolve_location(str(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        checksums = jobs.checksum_files(list_landing_files(source, (".txt",)), source.filesystem)
        ray.data.range(2).map_batches(lambda batch: batch, max_retries=1).take_all()

    assert list(checksums.values()) == [hashlib.sha256(b"a").hexdigest()]
    deprecations = [w for w in caught if "ray_remote_args" in str(w.message)]
    # Only the call made here, outside the engine, is warned about.
    assert len(deprecations) == 1 and deprecations[0].filename == __file__


def test_checksums_are_the_files_sha256_in_this_process_threads_and_in_ray_workers(shared_ray, tmp_path, place):
    contents = {f"file-{number:02d}.hl7": os.urandom(number * 70_001) for number in range(9)}
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
    source = resolve_location(str(tmp_path))
    checksums = jobs.checksum_files(list_landing_files(source, (".hl7",)), source.filesystem)
    assert {os.path.basename(path): digest for path, digest in checksums.items()} == {
        name: hashlib.sha256(data).hexdigest() for name, data in contents.items()
    }
