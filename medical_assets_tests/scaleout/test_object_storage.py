"""MEDICAL_ASSETS_DATA_DIR=s3://...: the whole graph against a real S3-compatible server on loopback
(moto in server mode), through pyarrow's S3 filesystem.

The first run is on a Ray cluster of two nodes (RAY_ADDRESS; token authentication, loopback only)
whose Python has every dependency but not medical_assets: the jobs run on both nodes with our code
from the job's runtime_env, and the run only disconnects. The runs after it (the idempotent rerun, a
planted leak) use a local Ray that inherits the object-store settings. (A node without a module
the tasks need: engine/test_worker_modules.py.)"""

import os
import re
import secrets
import tempfile
from io import BytesIO

import dagster as dg
import psutil
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pydicom
import pytest
from deltalake import DeltaTable
from pydicom.data import get_testdata_file

from medical_assets.delta_tables import RETENTION_VAR, storage_options, table_uri
from medical_assets.engine.cell_texts import CellTextFolder, published_keys
from medical_assets.privacy.audit import AuditLog
from medical_assets.storage import TablePublication, read_table, resolve_location, table_files, write_table_atomically
from medical_assets_tests.defs.pipeline import materialize_planted_leak
from medical_assets_tests.scaleout import cluster
from medical_assets_tests.scaleout.servers import failures, materialize_graph, port_open, s3_server, session_members

pytestmark = [pytest.mark.slow, pytest.mark.long_running, pytest.mark.ray_free]  # Ray starts with the object store settings

BUCKET = "medical-assets-test"
PREFIX = "site-a/data"
KEY = secrets.token_urlsafe(32)
MESSAGES, DICOM_FILES = 100, 3


@pytest.fixture(scope="module")
def moto_folder(tmp_path_factory):
    """Where moto's server logs: a line a request (`_requests`)."""
    return tmp_path_factory.mktemp("moto")


@pytest.fixture(scope="module")
def s3_endpoint(moto_folder):
    """moto's S3 server with one empty bucket; the AWS variables that pyarrow, boto3 and the Ray
    workers read point at it while the module runs."""
    with s3_server(str(moto_folder), BUCKET) as variables, pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            patch.delenv(name, raising=False)
        for name, value in variables.items():
            patch.setenv(name, value)
        yield variables["AWS_ENDPOINT_URL_S3"]


LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1"}


@pytest.fixture(scope="module")
def cluster_run(s3_endpoint, isolated_home):
    """The whole graph on the two-node cluster, into the bucket; what the cluster and the run showed,
    gathered while the cluster is up (it is stopped before the module's other runs)."""
    aws = {name: os.environ[name] for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                                               "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    with tempfile.TemporaryDirectory(prefix="ma-node-") as venv, tempfile.TemporaryDirectory() as cwd:
        with cluster.two_node_cluster(cluster.node_python(venv), aws) as nodes:
            members = session_members(nodes["process"].pid)
            seen = {
                "names": [p.name() for p in members],
                "listening": {c.laddr.ip for c in psutil.net_connections(kind="inet")
                              if c.status == psutil.CONN_LISTEN and c.pid in {p.pid for p in members}},
            }
            outcome = cluster.run_graph_on(nodes, aws, f"s3://{BUCKET}/{PREFIX}", KEY, MESSAGES, DICOM_FILES, cwd, str(isolated_home))
            head_temp, second_temp = nodes["temps"]
            seen |= {
                "outcome": outcome,
                "drivers": [n for n in cluster.session_logs(head_temp) if n.startswith("python-core-driver-")],
                "tasks": [cluster.tasks_run(temp) for temp in (head_temp, second_temp)],
                "shipped": [cluster.shipped_code(temp) for temp in (head_temp, second_temp)],
                "still up": port_open(int(nodes["address"].rsplit(":", 1)[1])) and nodes["process"].poll() is None,
                "still": [p.name() for p in session_members(nodes["process"].pid)],
                "local files": os.listdir(cwd),
                "token written": (isolated_home / ".ray").exists(),
            }
    return seen


def test_the_whole_graph_runs_on_both_nodes_of_a_cluster(cluster_run):
    assert cluster_run["names"].count("raylet") == 2 and "gcs_server" in cluster_run["names"], cluster_run["names"]
    listening = cluster_run["listening"]
    assert listening and listening <= LOOPBACK, f"the cluster listens beyond loopback: {listening}"
    outcome = cluster_run["outcome"]
    assert outcome["success"], outcome["failures"]
    # The run's jobs ran on the cluster: its driver is registered in the cluster's session
    # (python-core-driver-<job id>_<pid>.log), and the run started no Ray of its own.
    assert any(name.endswith(f"_{outcome['pid']}.log") for name in cluster_run["drivers"]), cluster_run["drivers"]
    assert not {"raylet", "gcs_server"} & set(outcome["children"]), outcome["children"]
    # On both nodes: each node's workers ran tasks of the pipeline's jobs, with medical_assets
    # unpacked from the job's runtime_env into that node's own temp folder.
    for tasks, shipped in zip(cluster_run["tasks"], cluster_run["shipped"]):
        assert {name for name in tasks if name.startswith(("ReadLandingFiles", "MapBatches("))}, tasks
        assert shipped
    # The run only disconnected: the cluster was still up, with the same processes; the client
    # wrote no token of its own, and nothing to a local folder.
    assert cluster_run["still up"] and cluster_run["still"].count("raylet") == 2
    assert not cluster_run["token written"] and not cluster_run["local files"]


@pytest.fixture(scope="module")
def ray_with_the_object_store_settings(s3_endpoint):
    """One local Ray for the runs of this module, started once the AWS variables point at the
    endpoint (its workers read them when they start); each run finds it and leaves it running."""
    import ray

    from medical_assets.engine.runtime import RayRuntime

    assert not ray.is_initialized(), "a Ray started without the object store settings is already running"
    runtime = RayRuntime(num_cpus=2)
    runtime.ensure_started()
    yield runtime
    runtime.stop()


def _s3() -> pafs.S3FileSystem:
    # S3FileSystem() ignores AWS_ENDPOINT_URL_S3 (FileSystem.from_uri, which the pipeline uses, honours it).
    return pafs.S3FileSystem(endpoint_override=os.environ["AWS_ENDPOINT_URL_S3"], region="us-east-1")


def _delta(zone: str, table: str) -> DeltaTable:
    """A published table, opened as any Delta reader would (tables on an object store are Delta tables)."""
    return DeltaTable(f"s3://{BUCKET}/{PREFIX}/{zone}/{table}", storage_options=_DELTA_OPTIONS)


_DELTA_OPTIONS = {"AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1"}  # the endpoint comes from AWS_ENDPOINT_URL


def _files(zone: str, table: str) -> list[str]:
    """The files of the table's current version, relative to its folder."""
    root = f"s3://{BUCKET}/{PREFIX}/{zone}/{table}/"
    return sorted(uri[len(root):] for uri in _delta(zone, table).file_uris())


def _rows(zone: str, table: str) -> int:
    return _delta(zone, table).to_pyarrow_table().num_rows


def _content(zone: str, table: str) -> list[str]:
    """The rows of a table in a comparable, order-free form."""
    return sorted(map(repr, _delta(zone, table).to_pyarrow_table().to_pylist()))


def _night_message(number: int) -> str:
    """A lab result as an interface engine sends it, for a patient the history does not have (sex
    unknown, a clinic of its own: nothing that would enter a column's vocabulary and touch every part)."""
    return "\r".join([
        f"MSH|^~\\&|LAB|NIGHT_CLINIC|EMR|SURGERY|20261206230{number}||ORU^R01^ORU_R01|NIGHT{number}|P|2.4",
        f"PID|1||NIGHT{number}^^^^MR||NACHTIGALL^ROSA^||19570{number + 1}12|U|||3 QUAY RD^^BALTIMORE^MD^21202",
        "PV1|1|O",
        f"OBR|1|ORDN{number}|LABN{number}|58410-2^CBC panel^LN|||20261206230{number}",
        f"OBX|1|NM|718-7^Hemoglobin^LN||13.{number}7|g/dL|12.0-17.5|N|||F|||20261206230{number}",
    ])


def _requests(moto_folder) -> list[tuple[str, str]]:
    """Every request moto's server answered so far, as (method, path without the query)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", (moto_folder / "moto.log").read_text(errors="replace"))
    return [(method, path.split("?", 1)[0]) for method, path in re.findall(r'"([A-Z]+) (\S+) HTTP/1\.1"', text)]


def _objects(under: str = "") -> dict[str, int]:
    """Every object (key -> size) below the data folder, or below `under` in it."""
    root = f"{BUCKET}/{PREFIX}" + (f"/{under}" if under else "")
    selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    return {info.path[len(root) + 1 :]: info.size for info in _s3().get_file_info(selector) if info.type == pafs.FileType.File}


def test_ray_workers_inherit_the_object_store_settings(s3_endpoint, ray_with_the_object_store_settings):
    """The local Ray a run starts (here the module's, started as a run starts one) passes the
    driver's AWS variables to its workers."""
    import ray

    seen = ray.get(ray.remote(lambda: {n: os.environ.get(n) for n in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID")}).remote())
    assert seen == {"AWS_ENDPOINT_URL_S3": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing"}


def test_whole_graph_on_object_storage_then_a_night_published_as_delta_commits(
    cluster_run, s3_endpoint, moto_folder, ray_with_the_object_store_settings, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a relative ./data would land here
    data_dir = f"s3://{BUCKET}/{PREFIX}"
    first = cluster_run["outcome"]  # the run on the cluster
    assert first["success"], first["failures"]

    # The synthetic corpora were generated into the bucket, under the data folder's landing zone.
    landing = _objects("landing")
    assert sum(name.startswith("hl7/") and name.endswith(".hl7") for name in landing) >= 1
    assert sum(name.startswith("dicom/") for name in landing) >= DICOM_FILES

    # Row counts, read back through pyarrow's S3 filesystem.
    assert _rows("phi", "hl7_messages") == MESSAGES
    assert _rows("phi", "hl7_errors") == 0
    assert _rows("phi", "dicom_images") == DICOM_FILES
    assert _rows("phi", "dicom_errors") == 0
    assert _rows("deid", "hl7_messages") == MESSAGES
    exported, excluded = _rows("deid", "dicom_images"), _rows("phi", "dicom_deid_excluded")
    assert exported + excluded == DICOM_FILES and exported > 0

    # The de-identified DICOM files are objects in the bucket, readable and de-identified.
    deid_files = {name: size for name, size in _objects("deid/dicom").items() if name.endswith(".dcm")}
    assert len(deid_files) == exported
    with _s3().open_input_stream(f"{BUCKET}/{PREFIX}/deid/dicom/{min(deid_files)}") as stream:
        dataset = pydicom.dcmread(BytesIO(stream.read()))
    assert dataset.PatientIdentityRemoved == "YES"
    # The check kept their texts under the keys of the published copies (the commit copied each
    # staged file, with a time of its own): a night searches those instead of reading the images.
    deid = resolve_location(f"{data_dir}/deid/dicom")
    kept = CellTextFolder(resolve_location(f"{data_dir}/phi/_census/dicom_texts"))
    assert all(kept.has(key) for key in published_keys(deid)), "the published DICOM files' texts must be kept"
    assert [name for name in _objects("phi/_census/dicom_texts") if name.startswith("bundles/")]

    # The blocking leak checks ran over the bucket and passed, as did every other check.
    evaluations = first["checks"]
    assert evaluations.get("no_identifiers_leaked_hl7") is True
    assert evaluations.get("no_identifiers_leaked_dicom") is True
    assert all(evaluations.values()), evaluations

    # Every PHI read was audited, as objects in the bucket's PHI zone.
    audit = [r for r in AuditLog(resolve_location(f"{data_dir}/phi/_audit")).records() if r.run_id == first["run_id"]]
    subjects = " ".join(r.subject for r in audit)
    assert all(r.outcome == "success" for r in audit)
    for read in ("HL7 landing", "DICOM landing", "HL7 tables", "DICOM images", "leak check"):
        assert read in subjects

    # Every published table is a Delta table, its files under the run that wrote them.
    first_files = {table: _files(*table) for table in (("phi", "hl7_messages"), ("deid", "hl7_messages"))}
    for (zone, table), files in first_files.items():
        assert files and all(f.startswith(f"run-{first['run_id']}/part-") for f in files), (zone, table, files)
    assert _delta("deid", "dicom_images").version() >= 0 and _delta("phi", "hl7_parse_ledger").version() >= 0
    assert _rows("deid", "analytics/message_types") > 0  # the analytics Parquet too

    # A night: one new file of hand-written messages, after a run that died before its commit left a
    # staged table. The dead run's staging is discarded; one commit a table adds the night's parts and
    # keeps the published ones where they are; the old version stays readable (time travel).
    rows_before = {table: _content(*table) for table in (("phi", "hl7_messages"), ("deid", "hl7_messages"), ("deid", "dicom_images"))}
    versions_before = {table: _delta(*table).version() for table in first_files}
    stray = f"{BUCKET}/{PREFIX}/phi/.staging/deadrun/hl7_messages/part-00000.parquet"
    pq.write_table(_delta("phi", "hl7_messages").to_pyarrow_table(), stray, filesystem=_s3())
    night = "\r\n".join(_night_message(n) for n in range(2)).encode()
    with _s3().open_output_stream(f"{BUCKET}/{PREFIX}/landing/hl7/night-20261207.hl7") as out:
        out.write(night)
    requests_before = len(_requests(moto_folder))
    with dg.DagsterInstance.ephemeral() as instance:
        # The night's tables; the analytics and reports read them the same way (shown by the first run).
        tables = dg.AssetSelection.groups("landing", "phi", "deid")
        second = materialize_graph(data_dir, KEY, messages=MESSAGES, dicom_files=DICOM_FILES, instance=instance, selection=tables)
        assert second.success, failures(second)
        logged = [entry.user_message for entry in instance.all_logs(second.run_id)]
    assert any("discarded unfinished run deadrun" in message for message in logged), "the dead run's staging must be discarded"
    assert _rows("phi", "hl7_messages") == _rows("deid", "hl7_messages") == MESSAGES + 2
    assert _content("deid", "dicom_images") == rows_before[("deid", "dicom_images")]
    for table, files in first_files.items():
        now = _files(*table)
        commits = [c for c in _delta(*table).history() if c.get("medical_assets.run_id") == second.run_id]
        assert len(commits) == 1 and commits[0]["version"] > versions_before[table], commits
        assert set(files) < set(now), f"{table}: the published parts must be kept, not copied: {files} {now}"
        assert [f for f in now if f not in files] and all(f.startswith(f"run-{second.run_id}/") for f in now if f not in files)
        old = _delta(*table)
        old.load_as_version(versions_before[table])
        assert sorted(map(repr, old.to_pyarrow_table().to_pylist())) == rows_before[table]
    after = _objects()
    assert not [name for name in after if "/.staging/" in f"/{name}"], "staging objects left behind"
    assert {n for n in after if n.startswith("deid/dicom/") and n.endswith(".dcm")} == {f"deid/dicom/{n}" for n in deid_files}
    # The night searched the exported images for its new identifiers through their kept texts: not
    # one request for an image (it asked for each image's info, then its texts, before).
    asked = [(method, path) for method, path in _requests(moto_folder)[requests_before:] if path.endswith(".dcm")]
    assert not [path for _, path in asked if "/deid/" in path], asked

    # A night with a new image (pydicom's CT_small.dcm, dropped in the landing folder): it is exported;
    # the other images are carried over, copied into the staging, and searched through the texts of
    # their published originals: neither they nor their copies are read.
    with open(get_testdata_file("CT_small.dcm"), "rb") as source, \
            _s3().open_output_stream(f"{BUCKET}/{PREFIX}/landing/dicom/night/CT_small.dcm") as out:
        out.write(source.read())
    requests_before = len(_requests(moto_folder))
    with dg.DagsterInstance.ephemeral() as instance:
        third = materialize_graph(data_dir, KEY, messages=MESSAGES, dicom_files=DICOM_FILES, instance=instance, selection=tables)
        assert third.success, failures(third)
    now_files = {name for name in _objects("deid/dicom") if name.endswith(".dcm")}
    assert set(deid_files) < now_files and _rows("deid", "dicom_images") == exported + 1
    asked = [(method, path) for method, path in _requests(moto_folder)[requests_before:]
             if "/deid/" in path and path.endswith(".dcm") and path.rsplit("/dicom/", 1)[-1] in deid_files]
    # Not read, not copied into the staging, not written again: a carried image costs no request.
    assert not asked, asked
    kept = CellTextFolder(resolve_location(f"{data_dir}/phi/_census/dicom_texts"))
    assert all(kept.has(key) for key in published_keys(resolve_location(f"{data_dir}/deid/dicom")))

    # The leak gate really walks the bucket's staging: an identifier in a staged output is found, nothing
    # is published, and the output is copied into the PHI zone's quarantine.
    names = _delta("phi", "hl7_messages").to_pyarrow_table()["patient_family_name"].to_pylist()
    name = next(n for n in names if n and len(n) >= 5)
    check = materialize_planted_leak(data_dir, KEY, "hl7_messages", pa.table({"comment": [f"seen by {name} yesterday"]}))
    evaluations = check.get_asset_check_evaluations()
    assert [(e.check_name, e.passed) for e in evaluations] == [("planted_leak_check", False)]
    assert "part-99999.parquet" in str(evaluations[0].metadata) and name not in str(evaluations[0].metadata)
    assert not [n for n in _objects("deid/hl7_messages") if "99999" in n], "a rejected output was published"
    assert not [f for f in _files("deid", "hl7_messages") if "99999" in f]
    assert [n for n in _objects("phi/quarantine") if n.endswith("part-99999.parquet")]

    assert not (tmp_path / "data").exists(), "nothing may be written to a local ./data"
    assert not os.listdir(tmp_path)


def test_a_table_publication_killed_before_its_delta_commit_is_invisible_until_recovered(s3_endpoint, monkeypatch):
    """The Delta commit is the moment a new version appears: a run that dies after copying its files
    but before the commit leaves readers the old version whole; the next run's recovery commits it
    once; old versions' files stay for the retention, then a publication vacuums them."""
    from deltalake import DeltaTable as Table

    zone = resolve_location(f"s3://{BUCKET}/units/phi")
    table = zone.child("numbers")

    def publish(run: str, parts: dict[str, list[int]], carried: tuple[str, ...] = ()) -> None:
        publication = TablePublication(zone, run_id=run)
        for part in carried:
            publication.carry("numbers", next(f for f in table_files(table) if f.name == part))
        for part, values in parts.items():
            publication.staged("numbers").makedirs()
            write_table_atomically(pa.table({"n": pa.array(values, pa.int64())}), publication.staged("numbers").child(part))
        publication.commit({"numbers": pa.schema([("n", pa.int64())])})

    def numbers() -> list[int]:
        return sorted(read_table(table).column("n").to_pylist())

    publish("r1", {"part-00000.parquet": [0, 1], "part-00001.parquet": [2]})
    assert [f.path.rsplit("/", 2)[1:] for f in table_files(table)] == [["run-r1", "part-00000.parquet"], ["run-r1", "part-00001.parquet"]]

    monkeypatch.setattr(Table, "create_write_transaction", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError, match="killed"):
        publish("r2", {"part-00001.parquet": [20, 21]}, carried=("part-00000.parquet",))
    monkeypatch.undo()
    assert "numbers/run-r2/part-00001.parquet" in _objects_under("units/phi"), "the run died after copying its file"
    assert numbers() == [0, 1, 2]  # ... but before its commit: the old version, whole
    assert Table(table_uri(table), storage_options=storage_options(table)).to_pyarrow_table().num_rows == 3

    assert TablePublication.recover(zone) == ["completed publication r2"]
    assert TablePublication.recover(zone) == []
    assert numbers() == [0, 1, 20, 21]
    assert [f.path.rsplit("/", 2)[1] for f in table_files(table)] == ["run-r1", "run-r2"]  # part-00000 kept where it was
    assert "numbers/run-r1/part-00001.parquet" in _objects_under("units/phi")  # the old version's, kept for time travel

    monkeypatch.setenv(RETENTION_VAR, "0")
    publish("r3", {"part-00000.parquet": [3]})
    assert numbers() == [3]
    assert sorted(n for n in _objects_under("units/phi") if n.endswith(".parquet")) == ["numbers/run-r3/part-00000.parquet"]


def _objects_under(prefix: str) -> set[str]:
    root = f"{BUCKET}/{prefix}"
    selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    return {info.path[len(root) + 1 :] for info in _s3().get_file_info(selector) if info.type == pafs.FileType.File}
