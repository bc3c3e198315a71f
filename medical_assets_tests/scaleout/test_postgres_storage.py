"""Dagster's storage on PostgreSQL (dagster-postgres), configured by the example in dagster.yaml, on a
server this test starts itself (Debian's postgresql: initdb, then postgres on 127.0.0.1)."""

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import dagster as dg
import pytest
import yaml

from medical_assets.defs.resources import PipelineConfig, RayResource
from medical_assets_tests.scaleout.servers import (
    free_port,
    start_in_own_group,
    stop_group,
    wait_for,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
INSTALL_HINT = "install Debian's postgresql: apt-get install postgresql"
USER, DATABASE = "dagster", "dagster_runs"
PG_MARKER = "# For PostgreSQL instead of SQLite"


def _server_binaries() -> str | None:
    """The folder of initdb and postgres: Debian keeps them in /usr/lib/postgresql/<version>/bin,
    off the PATH; other systems put them on it."""
    on_path = shutil.which("initdb")
    if on_path and os.path.exists(os.path.join(os.path.dirname(os.path.realpath(on_path)), "postgres")):
        return os.path.dirname(os.path.realpath(on_path))
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda f: int(f.split("/")[-2]) if f.split("/")[-2].isdigit() else 0)
    for folder in reversed(folders):
        if os.path.exists(os.path.join(folder, "initdb")) and os.path.exists(os.path.join(folder, "postgres")):
            return folder
    return None


def _server_user() -> str | None:
    """initdb and postgres refuse to run as root: as root, run them as Debian's `postgres` user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        pytest.fail("running as root, and there is no `postgres` user to run the server as; " + INSTALL_HINT)


def _postgres_storage_example() -> dict:
    """The commented `storage` block that dagster.yaml documents for PostgreSQL, uncommented."""
    lines = (REPO / "dagster.yaml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(PG_MARKER))
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        if line.startswith(("# storage:", "#  ")):
            block.append(line[2:])
    return yaml.safe_load("\n".join(block))


@pytest.fixture
def postgres():
    binaries = _server_binaries()
    if binaries is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL server binaries not found under CI; {INSTALL_HINT} (.ci/run does)")
        pytest.skip(INSTALL_HINT)
    user = _server_user()
    # Outside pytest's tmp_path, which is private to root: the server's user must reach it.
    root = tempfile.mkdtemp(prefix="ma-pg-")
    data, sockets, password_file = os.path.join(root, "data"), os.path.join(root, "sockets"), os.path.join(root, "pw")
    password = secrets.token_urlsafe(16)
    os.mkdir(sockets)
    Path(password_file).write_text(password + "\n")
    if user:
        entry = pwd.getpwnam(user)
        for path in (root, sockets, password_file):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    port, log = free_port(), os.path.join(root, "postgres.log")
    initdb = subprocess.run(
        [os.path.join(binaries, "initdb"), "-D", data, "-U", USER, "--pwfile", password_file, "--auth", "scram-sha-256",
         "-E", "UTF8", "--locale", "C", "--no-sync"],
        user=user, check=False, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, cwd=root,
    )
    assert initdb.returncode == 0, initdb.stdout + initdb.stderr
    server = start_in_own_group(
        [os.path.join(binaries, "postgres"), "-D", data, "-p", str(port), "-c", "listen_addresses=127.0.0.1",
         "-c", f"unix_socket_directories={sockets}", "-c", "fsync=off", "-c", "full_page_writes=off"],
        log, user=user,
    )
    try:
        import psycopg2

        def accepts_connections() -> bool:
            try:
                psycopg2.connect(host="127.0.0.1", port=port, user=USER, password=password, dbname="postgres", connect_timeout=2).close()
            except psycopg2.OperationalError:
                return False
            return True

        wait_for(accepts_connections, 60, "postgres", log)
        connection = psycopg2.connect(host="127.0.0.1", port=port, user=USER, password=password, dbname="postgres")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DATABASE}")
        connection.close()
        yield {"host": "127.0.0.1", "port": port, "user": USER, "password": password, "db": DATABASE}
    finally:
        stop_group(server, first_signal=signal.SIGINT)  # PostgreSQL's fast shutdown
        shutil.rmtree(root, ignore_errors=True)


def test_runs_are_recorded_in_postgresql_with_the_dagster_yaml_example(postgres, tmp_path, monkeypatch):
    import psycopg2

    storage = _postgres_storage_example()
    assert set(storage["storage"]["postgres"]["postgres_db"]) >= {"hostname", "port", "username", "password", "db_name"}
    home = tmp_path / "dagster_home"
    home.mkdir()
    settings = yaml.safe_load((REPO / "dagster.yaml").read_text())
    settings["storage"] = storage["storage"]
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_HOST", postgres["host"])
    monkeypatch.setenv("DAGSTER_PG_PORT", str(postgres["port"]))
    monkeypatch.setenv("DAGSTER_PG_USER", postgres["user"])
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", postgres["password"])
    monkeypatch.setenv("DAGSTER_PG_DB", postgres["db"])

    # A small selection that needs no Ray: the HL7 assets over an empty landing folder (a quiet night).
    from medical_assets.definitions import defs

    empty_feed = tmp_path / "feed"
    empty_feed.mkdir()
    assets = [defs.get_assets_def(key) for key in ("synthetic_hl7_files", "hl7_landing_manifest", "hl7_messages")]
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        result = dg.materialize(
            assets,
            instance=instance,
            resources={
                "pipeline": PipelineConfig(data_dir=str(tmp_path / "data"), hl7_source=str(empty_feed)),
                "ray_engine": RayResource(num_cpus=1),
            },
        )
        assert result.success

    # A fresh instance from the same DAGSTER_HOME, and the database itself, both have the run.
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(result.run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        materialized = instance.get_latest_materialization_event(dg.AssetKey("hl7_messages"))
        assert materialized is not None and materialized.run_id == result.run_id
    connection = psycopg2.connect(
        host=postgres["host"], port=postgres["port"], user=postgres["user"], password=postgres["password"], dbname=postgres["db"]
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT status FROM runs WHERE run_id = %s", (result.run_id,))
            assert cursor.fetchall() == [("SUCCESS",)]
            cursor.execute("SELECT count(*) FROM event_logs WHERE run_id = %s", (result.run_id,))
            assert cursor.fetchone()[0] > 0
    finally:
        connection.close()
    assert not list(home.glob("**/*.db")), "no SQLite storage may be created next to dagster.yaml"
