"""The `medical-assets listen` command and the clients of its tests as subprocesses, each in its own session.

A listener is asked for port 0 and the port it bound is read from its log line ("... listening on
HOST:PORT ..."); every process is stopped through its process group, and killed in a `finally`
when a test leaves early, so none outlives its test.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
MEDICAL_ASSETS = BIN / "medical-assets"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
_LISTENING = re.compile(r" listening on (\S+):(\d+)")


def listener_environment(home: Path, **variables: str) -> dict[str, str]:
    """This process's environment without the pipeline's variables, HOME at `home`, then `variables`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("MEDICAL_ASSETS_") and name != "RAY_ADDRESS"}
    return env | {"HOME": str(home), **variables}


@dataclass
class Listener:
    """A running `medical-assets listen`; its stderr (the log) and stdout go to files beside each other."""

    process: subprocess.Popen
    stderr: Path
    stdout: Path
    port: int = 0

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int:
        """Send `signum` to the listener's process group; its exit code once it has ended."""
        os.killpg(self.process.pid, signum)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the listener did not stop within {timeout:g} s of signal {signum}:\n{self.log()[-3000:]}") from None

    def kill(self) -> None:
        """SIGKILL to the process group, as a crash or an OOM killer would; waits for the process."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT_S)


def start_listener(kind: str, arguments: list[str], env: Mapping[str, str], logs: Path, name: str = "listener") -> Listener:
    """`medical-assets listen <kind> --port 0 <arguments>`, returned once it accepts connections."""
    stderr, stdout = logs / f"{name}.stderr", logs / f"{name}.stdout"
    with open(stderr, "wb") as err, open(stdout, "wb") as out:
        process = subprocess.Popen(
            [str(MEDICAL_ASSETS), "listen", kind, "--port", "0", *arguments],
            env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
        )
    listener = Listener(process, stderr, stdout)
    try:
        listener.port = _bound_port(listener)
    except BaseException:
        listener.kill()
        raise
    return listener


@contextlib.contextmanager
def running_listener(kind: str, arguments: list[str], env: Mapping[str, str], logs: Path, name: str = "listener") -> Iterator[Listener]:
    """A listener for the body of a `with`: killed on the way out unless the body stopped it."""
    listener = start_listener(kind, arguments, env, logs, name)
    try:
        yield listener
    finally:
        if listener.process.poll() is None:
            listener.kill()


def run_client(command: list[str], env: Mapping[str, str], timeout: float = 60.0) -> subprocess.CompletedProcess:
    """A client program to its end, in its own session; its process group is killed if it overruns."""
    process = subprocess.Popen(
        command, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _bound_port(listener: Listener) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        match = _LISTENING.search(listener.log())
        if match:
            return int(match.group(2))
        if listener.process.poll() is not None:
            raise AssertionError(f"the listener exited ({listener.process.returncode}) before listening:\n{listener.log()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"the listener did not say its port within {START_TIMEOUT_S:g} s:\n{listener.log()[-3000:]}")
