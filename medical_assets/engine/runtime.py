"""Start a private local Ray, or join the cluster in RAY_ADDRESS, and stop only what we started."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import ray

from medical_assets.config import ConfigurationError

logger = logging.getLogger(__name__)

# Ray's own loggers chatter at INFO on every start and job; keep them to warnings.
_NOISY_LOGGERS = ("ray", "ray.data", "ray._private", "ray.util")
_PROCESS_TOKEN = secrets.token_hex(32)


@dataclass
class RayRuntime:
    """One Ray session for one Dagster run; started lazily, at the first `ensure_started`."""

    address: str | None = None  # None: a private local Ray; else join this cluster
    num_cpus: int | None = None  # local Ray only
    object_store_memory_bytes: int | None = None  # local Ray only
    ship_code: bool = True  # joined cluster only: upload this package with the job (runtime_env)
    _temp_dir: str | None = field(default=None, init=False)
    _connected: bool = field(default=False, init=False)  # ray.init was ours to undo
    _saved_environment: dict[str, str | None] = field(default_factory=dict, init=False)

    @property
    def is_local(self) -> bool:
        return not self.address

    def check_address(self) -> None:
        """Fail fast (ConfigurationError) when the cluster to join does not answer."""
        if not self.is_local:
            _require_reachable(self.address)

    def ensure_started(self) -> None:
        if self._connected:
            return
        if ray.is_initialized():
            # A notebook or test harness owns this Ray: use it, and leave it running.
            _configure_ray_data()
            return
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        # We turn progress bars off on purpose (the run log gets our own progress lines), and
        # token authentication on: neither deserves a warning in every run's log.
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
        logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
        started = time.monotonic()
        try:
            if self.is_local:
                self._start_local()
            else:
                self._join(self.address)
        except BaseException:
            self.stop()
            raise
        _configure_ray_data()
        logger.info(
            "Ray %s in %.1fs with %s CPUs",
            "started locally" if self.is_local else f"joined at {self.address}",
            time.monotonic() - started,
            int(ray.cluster_resources().get("CPU", 0)),
        )

    def stop(self) -> None:
        """Shut down a Ray this runtime started; only disconnect from a cluster it joined."""
        try:
            if self._connected:
                ray.shutdown()  # stops a local Ray; from a joined cluster it only disconnects
        finally:
            if self._temp_dir:
                shutil.rmtree(self._temp_dir, ignore_errors=True)
                self._temp_dir = None
            self._restore_environment()
            self._connected = False

    def _start_local(self) -> None:
        # A short private folder: Ray puts Unix sockets in it (107-byte path limit), and
        # neither /tmp/ray nor the user's home collects session files or tokens.
        self._temp_dir = tempfile.mkdtemp(prefix="ma-ray-", dir=_short_temp_root())
        self._set_environment(
            {
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_TMPDIR": self._temp_dir,
                # Workers stay in the run's process group, so killing the run's group (a CI
                # timeout, a scheduler) ends every Ray process with it.
                "RAY_process_group_cleanup_enabled": "0",
                # Ray turns token authentication on for a new local cluster (and refreshes its own
                # cached mode); given a token here it writes none to ~/.ray. One token per
                # process, because Ray's token loader caches it.
                "RAY_AUTH_TOKEN": _PROCESS_TOKEN,
                # Arrow's default pool (mimalloc) keeps what a thread freed in that thread's heap, out
                # of reach of release_memory; glibc's is trimmed whole, so an idle worker shrinks.
                # A user's own choice is kept.
                "ARROW_DEFAULT_MEMORY_POOL": os.environ.get("ARROW_DEFAULT_MEMORY_POOL", "system"),
            }
        )
        ray.init(
            address="local",
            num_cpus=self.num_cpus,
            object_store_memory=self.object_store_memory_bytes,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            _temp_dir=self._temp_dir,
            _node_ip_address="127.0.0.1",
        )
        self._connected = True

    def _join(self, address: str) -> None:
        _require_token_file()
        _require_reachable(address)
        try:
            ray.init(
                address=address,
                runtime_env=code_runtime_env() if self.ship_code else None,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
            self._connected = True
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ConfigurationError(
                f"RAY_ADDRESS={address!r}: could not join that Ray cluster ({type(error).__name__}: {error}). "
                "Check that the cluster is up and reachable and, for a cluster with token authentication, that "
                "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH (its token) were set before this "
                "process started; or unset RAY_ADDRESS to run on a local Ray."
            ) from None
        require_worker_modules()

    def _set_environment(self, values: dict[str, str | None]) -> None:
        for name, value in values.items():
            self._saved_environment.setdefault(name, os.environ.get(name))
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def _restore_environment(self) -> None:
        for name, value in self._saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_environment.clear()


# The run's Ray, started by the first job that hands work to Ray's workers (`require_ray`), not by
# the steps: a night whose jobs are all small enough for the run's process never starts one.
_started_on_demand: list[Callable[[], None]] = []
_required: list[bool] = [False]  # a job of the run asked for Ray


def start_on_demand(start: Callable[[], None] | None) -> None:
    """Make `start` (a run's `RayResource.ensure_started`, say) what `require_ray` calls; None: nothing."""
    _started_on_demand[:] = [start] if start is not None else []
    _required[0] = False


def require_ray() -> None:
    """Ray, before a job hands work to its workers: the run's Ray started if it is not yet. Without
    a run (a test, a notebook) a Ray this process already joined is used."""
    if _started_on_demand:
        _required[0] = True
        _started_on_demand[0]()
    elif not ray.is_initialized():
        raise RuntimeError("this job needs Ray: start one first (RayRuntime.ensure_started, or ray.init)")


def ray_is_paid_for() -> bool:
    """Whether Ray's start is paid: a job of this run has started it (outside a run: whether this
    process is connected to one)."""
    return _required[0] if _started_on_demand else ray.is_initialized()


def code_runtime_env() -> dict:
    """The job's runtime environment on a cluster: this package, uploaded once per version (Ray
    keys the upload by content) and put first on every worker's path, so each node runs the code
    of the process that launched the run, whatever version the cluster's image holds. The
    dependencies (pyproject) must be installed on the nodes: installing them per job would take
    minutes and need the package index."""
    import medical_assets  # the whole package, not only engine/

    package = os.path.dirname(os.path.abspath(medical_assets.__file__))
    return {"py_modules": [package], "excludes": ["__pycache__/", "*.pyc"]}


# What our tasks import on a worker: this package (shipped, or installed on the nodes) and the
# dependencies that run inside tasks (pyproject's, by import name).
WORKER_MODULES = (
    "medical_assets", "pyarrow", "pandas", "numpy", "numba", "pydicom", "PIL", "pylibjpeg", "openjpeg",
    "rle", "gdcm", "dicomanonymizer", "ahocorasick", "cryptography", "plotly", "matplotlib",
)


def missing_on_nodes(modules: tuple[str, ...], timeout_s: float = 120.0) -> dict[str, list[str]]:
    """For each alive node of the connected Ray, the modules its workers cannot find (none: left out).

    One zero-CPU task pinned to each node looks the modules up without importing them."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [node for node in ray.nodes() if node.get("Alive")]
    pending = {
        f"{node['NodeManagerAddress']} ({node['NodeID'][:12]})": _unfound_modules.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        ).remote(modules)
        for node in nodes
    }
    found = dict(zip(pending, ray.get(list(pending.values()), timeout=timeout_s)))
    return {node: missing for node, missing in found.items() if missing}


@ray.remote(num_cpus=0, max_retries=0)
def _unfound_modules(modules: tuple[str, ...]) -> list[str]:
    import importlib.util

    return [name for name in modules if importlib.util.find_spec(name) is None]


def require_worker_modules() -> None:
    """A cluster whose nodes lack a dependency would fail deep inside the first job, once per task;
    say which node lacks what before any job starts."""
    missing = missing_on_nodes(WORKER_MODULES)
    if missing:
        listing = "; ".join(f"{node}: {', '.join(names)}" for node, names in sorted(missing.items()))
        raise ConfigurationError(
            f"RAY_ADDRESS: these nodes of the cluster cannot import what the pipeline's tasks need: {listing}. "
            "Install medical-assets' dependencies (pyproject.toml) on every node, in the Python environment "
            "`ray start` runs in (the README's Running on a Ray cluster); with MEDICAL_ASSETS_RAY_SHIP_CODE=0 "
            "install medical_assets itself there too."
        )


# Failures a second attempt may not meet: a worker, node or owner lost, memory or the object store
# full, a connection dropped. A bug, bad input or a bad setting is never one of these.
_TRANSIENT_FAILURES = (
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.ObjectLostError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.LocalRayletDiedError,
    ray.exceptions.RaySystemError,
    ray.exceptions.RayActorError,
    ray.exceptions.OutOfMemoryError,
    ray.exceptions.ObjectStoreFullError,
    ConnectionError,
    TimeoutError,
)


def is_transient(error: BaseException | None) -> bool:
    """Whether `error`, or an error it wraps (Ray task errors and exception chains), is transient."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, ConfigurationError):
            return False  # an unreachable RAY_ADDRESS wraps a ConnectionError, and will stay unreachable
        if isinstance(error, _TRANSIENT_FAILURES):
            return True
        cause = getattr(error, "cause", None) if isinstance(error, ray.exceptions.RayTaskError) else None
        error = cause if isinstance(cause, BaseException) else (error.__cause__ or error.__context__)
    return False


# Ray's Unix sockets live under its session folder, and a socket path must fit in 107 bytes:
# with a deep TMPDIR (a CI workspace, pytest's folders) Ray would fail with an obscure error.
_MAX_TEMP_ROOT_LENGTH = 28  # + "/ma-ray-xxxxxxxx/session_<date>_<pid>/sockets/plasma_store" = 107


def _short_temp_root() -> str | None:
    """TMPDIR when it is short enough for Ray's socket paths, else /tmp."""
    root = tempfile.gettempdir()
    return root if len(root) <= _MAX_TEMP_ROOT_LENGTH else "/tmp"


def _require_token_file() -> None:
    """Ray 2.60 aborts the whole process (a failed C++ check, no exception) when RAY_AUTH_TOKEN_PATH
    names a missing or empty file: say so as a configuration error instead."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if not path:
        return
    try:
        with open(path, "rb") as file:
            has_token = bool(file.read().strip())
    except OSError as error:
        raise ConfigurationError(
            f"RAY_AUTH_TOKEN_PATH={path!r} cannot be read ({error.strerror or error}); point it at the cluster's "
            "token file, or unset it"
        ) from None
    if not has_token:
        raise ConfigurationError(f"RAY_AUTH_TOKEN_PATH={path!r} is empty; point it at the cluster's token file, or unset it")


def _require_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not after Ray's minutes of retries, when nothing listens at the address."""
    if address in ("auto", "local"):
        return
    host_port = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigurationError(f"RAY_ADDRESS={address!r} is not of the form host:port or ray://host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise ConfigurationError(
            f"RAY_ADDRESS={address!r}: nothing answers there ({error}). Start the cluster, fix the address, "
            "or unset RAY_ADDRESS to run on a local Ray."
        ) from None


def _configure_ray_data() -> None:
    context = ray.data.DataContext.get_current()
    # Per-operator resource reservation starts every job with no resources granted (the grant
    # arrives at the resource manager's next refresh, a second later), so one task runs alone
    # for that second, a large share of a short job. Our jobs are one fused
    # read-and-write operator each, which is what reservation protects other operators from.
    context.op_resource_reservation_enabled = False
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.verbose_stats_logs = False
