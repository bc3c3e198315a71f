"""Helpers for the scale-out tests: servers they start on loopback, each in its own process group,
stopped by that group's id (never by a process name), and the whole graph materialized once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import dagster as dg
import psutil

from medical_assets.defs.resources import PipelineConfig, PrivacyResource, RayResource


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_in_own_group(
    command: Sequence[str], log_path: str, env: Mapping[str, str] | None = None, user: str | None = None, cwd: str | None = None
) -> subprocess.Popen:
    """The command in a new session (so a new process group), its output in `log_path`."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            user=user,
            cwd=cwd,
        )


def stop_group(process: subprocess.Popen, timeout_s: float = 20.0, first_signal: int = signal.SIGTERM) -> None:
    """Stop everything started in the process's session: `first_signal` (SIGTERM) to its process
    group and to members that moved to a group of their own (Ray workers do), then SIGKILL."""
    for sig, wait_s in ((first_signal, timeout_s), (signal.SIGKILL, 10.0)):
        if not session_members(process.pid):
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        for member in session_members(process.pid):
            try:
                if os.getpgid(member.pid) != process.pid:
                    member.send_signal(sig)
            except (ProcessLookupError, psutil.Error):
                pass
        deadline = time.monotonic() + wait_s
        while session_members(process.pid) and time.monotonic() < deadline:
            process.poll()  # reap the leader, so it does not linger as a zombie
            time.sleep(0.2)
    process.wait(timeout=10)


def session_members(sid: int) -> list[psutil.Process]:
    """Live (not zombie) processes of the session `start_in_own_group` made (its id is the leader's pid)."""
    members = []
    for candidate in psutil.process_iter():
        try:
            if os.getsid(candidate.pid) == sid and candidate.status() != psutil.STATUS_ZOMBIE:
                members.append(candidate)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, log_path: str | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    tail = ""
    if log_path and os.path.exists(log_path):
        with open(log_path, errors="replace") as log:
            tail = "\n" + log.read()[-4000:]
    raise TimeoutError(f"{what} not ready after {timeout_s:.0f} s{tail}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


@contextmanager
def s3_server(folder: str, bucket: str) -> Iterator[dict[str, str]]:
    """moto's S3 server on 127.0.0.1, in its own process group, with one empty bucket. Yields the AWS
    variables that point pyarrow, boto3 and Ray workers at it; dummy credentials, because without any,
    writes to moto were stored corrupted (docs/engine-pitfalls.md)."""
    import boto3

    port, log = free_port(), os.path.join(folder, "moto.log")
    moto_server = os.path.join(os.path.dirname(sys.executable), "moto_server")
    server = start_in_own_group([moto_server, "-H", "127.0.0.1", "-p", str(port)], log)
    endpoint = f"http://127.0.0.1:{port}"
    variables = {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        wait_for(lambda: port_open(port), 60, "moto_server", log)
        boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        ).create_bucket(Bucket=bucket)
        yield variables
    finally:
        stop_group(server)


def materialize_graph(
    data_dir: str, key: str, messages: int = 300, dicom_files: int = 6, ray_engine: RayResource | None = None,
    instance: dg.DagsterInstance | None = None, selection=None,
) -> dg.ExecuteInJobResult:
    """Every asset and check of the project's Definitions (as test_deidentified does), or `selection`.
    The default Ray is a local one with 2 CPUs; `RayResource()` joins RAY_ADDRESS when it is set."""
    from medical_assets.definitions import defs

    return dg.materialize(
        [defs.get_assets_def(asset_key) for asset_key in defs.resolve_all_asset_keys()] + list(defs.asset_checks or []),
        selection=selection,
        instance=instance,
        resources={
            "pipeline": PipelineConfig(data_dir=data_dir, synthetic_hl7_messages=messages, synthetic_dicom_files=dicom_files),
            "ray_engine": ray_engine or RayResource(num_cpus=2),
            "privacy": PrivacyResource(pseudonym_key=key),
        },
        raise_on_error=False,
    )


def failures(result: dg.ExecuteInJobResult) -> list[str]:
    """What went wrong in a run, for an assertion message: failed steps' errors and failed checks."""
    problems = [
        f"{event.step_key}: {event.event_specific_data.error.message.strip()[:2000]}"
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    problems += [
        f"check {e.asset_key.to_user_string()}:{e.check_name} failed: {e.metadata}"
        for e in result.get_asset_check_evaluations()
        if not e.passed
    ]
    return problems
