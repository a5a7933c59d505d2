"""A real Kubernetes control plane for the cluster tests, started from local binaries (no Docker).

envtest runs only etcd and kube-apiserver, so Jobs never get pods and nothing is garbage-collected. The
operator's tests need more: Jobs whose pods are scheduled onto GPU nodes and then succeed or fail. So this
starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (fake nodes that "run" pods
by following the Stage files in ``tests/support/kwok/``), creates fake GPU and CPU nodes, and installs
Kaizen's CRDs (``crds/*.yaml``) and the third-party ones (``../shared/third-party-crds/``).

One implementation serves two callers: the pytest fixtures below (one control plane per test session)
and ``tools/start-control-plane.py`` (a foreground dev cluster).

Binaries come from ``$KUBEBUILDER_ASSETS``, else ``$K8S_BIN_DIR``, else
``~/.cache/kaizen/k8s-bin-<version>``, which ``tools/build-k8s-bins.sh`` fills. Without them the
cluster tests are skipped, or fail when ``KAIZEN_REQUIRE_CLUSTER=1`` (CI). ``KAIZEN_KUBECONFIG``
points the tests at a cluster that is already running (e.g. one from the launcher) instead.

Installing the third-party CRDs (4 MB of schema) costs the apiserver tens of CPU-seconds, more than the
rest of the startup. So the first start on a machine installs them into a fresh etcd, stops, and keeps
that etcd's data in ``~/.cache/kaizen/etcd-snapshots/``; later starts copy it and only apply Kaizen's
own (small, often changing) CRDs. The snapshot key covers the etcd and apiserver binaries and the
third-party CRD files, so a change to either makes a new one.

Pods on the fake nodes follow these rules (see the Stage files):

* a scheduled pod becomes Running and Ready at once;
* a Running pod owned by a Job exits 0 (Succeeded);
* a pod labelled ``kaizen.dev/fake-exit-code: "N"`` exits with code N (Failed), with the termination
  message from annotation ``kaizen.dev/fake-termination-message``;
* annotation ``kaizen.dev/fake-duration: "30s"`` keeps either kind Running that long first;
* a deleted pod goes away once its finalizers are gone (there is no kubelet to confirm it).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import pytest
import yaml

# kubernetes is imported where it is used: importing it takes seconds (thousands of pydantic models), and
# every pytest run loads this plugin, unit tests included.
if TYPE_CHECKING:
    from kubernetes import client

K8S_VERSION = "v1.36.3"  # pinned by tools/k8s-bins/go.mod and tools/build-k8s-bins.sh
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
REPO_ROOT = Path(__file__).resolve().parents[2]
KAIZEN_CRDS_DIR = REPO_ROOT / "crds"
THIRD_PARTY_CRDS_DIR = REPO_ROOT.parent / "shared" / "third-party-crds"
KWOK_STAGES_DIR = Path(__file__).with_name("kwok")
FIELD_MANAGER = "kaizen-tests"
DEFAULT_SA_PATH = "/api/v1/namespaces/{}/serviceaccounts/default"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kaizen"
# Set on every CRD install_crds applies: a CRD whose hash matches is not applied again.
MANIFEST_HASH_ANNOTATION = "kaizen.dev/manifest-sha256"
# Part of the etcd snapshot key; bump it when a change here alters what a snapshot must contain.
SNAPSHOT_FORMAT = "1"

# Labels and annotations the kwok stages read (tests/support/kwok/pod-*.yaml).
FAKE_EXIT_CODE_LABEL = "kaizen.dev/fake-exit-code"
FAKE_TERMINATION_MESSAGE_ANNOTATION = "kaizen.dev/fake-termination-message"
FAKE_DURATION_ANNOTATION = "kaizen.dev/fake-duration"

# kube-controller-manager controllers: what Jobs, CronJobs, Deployments, garbage collection and namespace
# cleanup need. serviceaccount-controller creates each namespace's "default" ServiceAccount, so the
# ServiceAccount admission plugin can stay on as in production (a pod naming a missing ServiceAccount is
# rejected). The serviceaccount-token controller is not needed: pods get bound tokens from the
# TokenRequest API, which the apiserver serves itself, and no kubelet ever mounts them.
KCM_CONTROLLERS = (
    "job-controller",
    "cronjob-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "ttl-after-finished-controller",
    "pod-garbage-collector-controller",
    "serviceaccount-controller",
    "deployment-controller",
    "replicaset-controller",
)

T = TypeVar("T")


class ControlPlaneError(RuntimeError):
    """A component failed to start or died; the message carries the tail of its log."""


@dataclass(frozen=True)
class FakeNode:
    """A kwok node; GPU nodes carry the labels NVIDIA's GPU feature discovery would set."""

    name: str
    cpu: str
    memory: str
    gpus: int = 0
    gpu_product: str = ""
    gpu_memory_mib: int = 0

    def manifest(self) -> dict[str, Any]:
        labels = {
            "type": "kwok",
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
        }
        resources = {"cpu": self.cpu, "memory": self.memory, "pods": "110"}
        if self.gpus:
            labels |= {
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": self.gpu_product,
                "nvidia.com/gpu.count": str(self.gpus),
                "nvidia.com/gpu.memory": str(self.gpu_memory_mib),
            }
            resources["nvidia.com/gpu"] = str(self.gpus)
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": labels,
                # kwok manages nodes with this annotation; ttl 0 stops caching of the node object.
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            },
            # No kwok NoSchedule taint: there are no real nodes to protect.
            "status": {"capacity": resources, "allocatable": dict(resources)},
        }


FAKE_NODES = (
    FakeNode(
        "gpu-0", cpu="96", memory="1Ti", gpus=8, gpu_product="NVIDIA-H100-80GB-HBM3", gpu_memory_mib=81559
    ),
    FakeNode(
        "gpu-1", cpu="48", memory="512Gi", gpus=4, gpu_product="NVIDIA-A100-SXM4-40GB", gpu_memory_mib=40960
    ),
    FakeNode("cpu-0", cpu="16", memory="64Gi"),
)


def default_bin_dir() -> Path:
    """Where the control plane binaries are looked for (same order as tools/build-k8s-bins.sh)."""
    for var in ("KUBEBUILDER_ASSETS", "K8S_BIN_DIR"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    return CACHE_DIR / f"k8s-bin-{K8S_VERSION}"


def missing_binaries(bin_dir: Path) -> list[str]:
    return [name for name in BINARIES if not os.access(bin_dir / name, os.X_OK)]


def kaizen_crd_files() -> list[Path]:
    return sorted(KAIZEN_CRDS_DIR.glob("*.yaml"))


def third_party_crd_files() -> list[Path]:
    return sorted(THIRD_PARTY_CRDS_DIR.rglob("*.yaml"))


def default_crd_files() -> list[Path]:
    """Every CRD a Kaizen cluster has: the third-party ones and Kaizen's own, whatever of them exists."""
    return third_party_crd_files() + kaizen_crd_files()


def load_crds(files: Iterable[Path]) -> list[dict[str, Any]]:
    """Parse the CRD documents of ``files`` (other kinds are ignored). The C loader matters: the
    third-party CRDs are 4 MB of YAML, which the pure-Python loader needs many seconds for."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crds = []
    for path in files:
        with path.open() as stream:
            docs = list(yaml.load_all(stream, Loader=loader))
        crds += [d for d in docs if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition"]
    return crds


def wait_for(condition: Callable[[], T], timeout: float = 30, interval: float = 0.1, what: str = "") -> T:
    """Poll ``condition`` until it returns something truthy, and return that; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what or condition}")
        time.sleep(interval)


def kubeconfig_yaml(server: str, ca_data: str, token: str) -> str:
    """A one-context kubeconfig; ``ca_data`` is base64 PEM as kubeconfigs store it."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "kaizen", "cluster": {"server": server, "certificate-authority-data": ca_data}}
            ],
            "users": [{"name": "kaizen", "user": {"token": token}}],
            "contexts": [{"name": "kaizen", "context": {"cluster": "kaizen", "user": "kaizen"}}],
            "current-context": "kaizen",
        },
        sort_keys=False,
    )


class CrdRef(NamedTuple):
    """What it takes to find a CRD's resource in discovery."""

    name: str
    group: str
    version: str  # the first served one
    plural: str

    @classmethod
    def of(cls, crd: dict[str, Any]) -> CrdRef:
        spec = crd["spec"]
        version = next(v["name"] for v in spec["versions"] if v["served"])
        return cls(crd["metadata"]["name"], spec["group"], version, spec["names"]["plural"])


class Cluster:
    """A reachable cluster, as tests see it: the kubeconfig plus client helpers."""

    def __init__(self, kubeconfig: Path, bin_dir: Path | None = None, log_dir: Path | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.bin_dir = bin_dir
        self.log_dir = log_dir
        self.crd_names: list[str] = []  # CRDs known to be Established (see wait_established)
        self._own_api: client.ApiClient | None = None

    @property
    def env(self) -> dict[str, str]:
        """Environment for subprocesses (kopf, kubectl, helm) that should talk to this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def api_client(self) -> client.ApiClient:
        """A new client authenticated as cluster admin; close it (or use ``with``) when done."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def close(self) -> None:
        if self._own_api is not None:
            self._own_api.close()
            self._own_api = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        missing_ok: bool = False,
    ) -> Any:
        """A REST call with plain JSON in and out; ApiException on an error status, except that with
        ``missing_ok`` a 404 returns None.

        The typed methods of kubernetes 37 validate bodies and build pydantic models: seconds of CPU for a
        large CRD, and up to a second for each model class on first use. And this reuses one client, so
        one pool of kept-alive connections: each new one costs a TLS handshake.
        """
        if self._own_api is None:
            self._own_api = self.api_client()
        api = self._own_api
        headers = {"Content-Type": content_type, "Accept": accept}
        params = list((query or {}).items())
        method, url, headers, body, _ = api.param_serialize(
            method, path, query_params=params, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        response = api.call_api(method, url, headers, body)
        data = response.read()
        if response.status == 404 and missing_ok:
            return None
        if not 200 <= response.status < 300:
            from kubernetes.client.rest import ApiException

            raise ApiException(
                status=response.status, reason=response.reason, body=data.decode(errors="replace")
            )
        return json.loads(data) if data else None

    def exists(self, path: str) -> bool:
        return self.request("GET", path, missing_ok=True) is not None

    def install_crds(self, crds: list[dict[str, Any]], timeout: float = 60) -> None:
        """Server-side apply those of ``crds`` the cluster lacks or has in another version, and wait
        until each is Established. Applying is what costs: the apiserver spends seconds of CPU on each
        large CRD, even when nothing changes."""
        crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        # Metadata only: the full list would be megabytes of schema.
        listing = self.request(
            "GET", crd_path, accept="application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
        )
        installed = {
            item["metadata"]["name"]: (item["metadata"].get("annotations") or {}).get(
                MANIFEST_HASH_ANNOTATION
            )
            for item in listing["items"] or []
        }
        outdated = []
        for crd in crds:
            digest = hashlib.sha256(json.dumps(crd, sort_keys=True).encode()).hexdigest()
            if installed.get(crd["metadata"]["name"]) != digest:
                annotations = {**(crd["metadata"].get("annotations") or {}), MANIFEST_HASH_ANNOTATION: digest}
                outdated.append({**crd, "metadata": {**crd["metadata"], "annotations": annotations}})

        def apply(crd: dict[str, Any]) -> None:
            self.request(
                "PATCH",
                f"{crd_path}/{crd['metadata']['name']}",
                crd,
                query={"fieldManager": FIELD_MANAGER, "force": "true"},
                content_type="application/apply-patch+yaml",
            )

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(apply, outdated))
        self.wait_established([CrdRef.of(crd) for crd in crds], timeout)

    def wait_established(self, crds: list[CrdRef], timeout: float = 60) -> None:
        """Wait until the CRDs' resources are served, and record them in ``crd_names``."""

        def served(crd: CrdRef) -> bool:
            # Discovery lists a CRD's resource once it is Established. Polling it is cheap; polling the CRD
            # itself makes the apiserver encode megabytes of schema every time.
            discovery = self.request("GET", f"/apis/{crd.group}/{crd.version}", missing_ok=True)
            return discovery is not None and any(r["name"] == crd.plural for r in discovery["resources"])

        for crd in crds:
            wait_for(partial(served, crd), timeout, interval=0.2, what=f"CRD {crd.name} Established")
            if crd.name not in self.crd_names:
                self.crd_names.append(crd.name)

    def kubeconfig_for_service_account(self, namespace: str, name: str, path: Path) -> Path:
        """Write a kubeconfig at ``path`` that authenticates as ServiceAccount ``namespace/name`` with a
        bound token, for tests of the operator's real RBAC."""
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        }
        token = self.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", request)
        admin = yaml.safe_load(self.kubeconfig.read_text())
        current = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
        cluster = next(c for c in admin["clusters"] if c["name"] == current["context"]["cluster"])["cluster"]
        ca_data = (
            cluster.get("certificate-authority-data")
            or base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
        )
        path.write_text(kubeconfig_yaml(cluster["server"], ca_data, token["status"]["token"]))
        return path


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


def _snapshot_key(bin_dir: Path, crd_files: list[Path]) -> str:
    digest = hashlib.sha256(SNAPSHOT_FORMAT.encode())
    for name in ("etcd", "kube-apiserver"):
        stat = (bin_dir / name).stat()
        digest.update(f"{name} {stat.st_size} {stat.st_mtime_ns}".encode())
    for path in crd_files:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


_PROBE_TLS = ssl.create_default_context()
_PROBE_TLS.check_hostname = False  # health probes on 127.0.0.1 before any CA is known
_PROBE_TLS.verify_mode = ssl.CERT_NONE


class _Probe:
    """Polls a health endpoint over one kept-alive connection: a TLS handshake per poll would cost the
    starting apiserver more CPU than the check itself."""

    def __init__(self, port: int, path: str, tls: bool = True, token: str | None = None) -> None:
        self.port, self.path, self.tls = port, path, tls
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.connection: http.client.HTTPConnection | None = None

    def __call__(self) -> bool:
        if self.connection is None:
            self.connection = (
                http.client.HTTPSConnection("127.0.0.1", self.port, timeout=2, context=_PROBE_TLS)
                if self.tls
                else http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            )
        try:
            self.connection.request("GET", self.path, headers=self.headers)
            response = self.connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):  # not listening yet, reset, TLS not ready
            self.close()
            return False
        return response.status == 200

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: deliver SIGTERM to it when the spawning thread dies, so a killed
    pytest (kill -9, os._exit on timeout) leaves no etcd/apiserver behind."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalControlPlane(Cluster):
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok on 127.0.0.1.

    ``start()`` returns once the API is ready, the controllers and scheduler are healthy, the fake nodes
    are Ready and the CRDs are Established. Call ``start()``/``stop()`` from the same long-lived thread:
    the child processes are tied to it (see ``_die_with_parent``).
    """

    def __init__(
        self, work_dir: Path, bin_dir: Path | None = None, snapshot_dir: Path = CACHE_DIR / "etcd-snapshots"
    ) -> None:
        super().__init__(work_dir / "kubeconfig", bin_dir or default_bin_dir(), work_dir / "logs")
        self.work_dir = work_dir
        self.snapshot_dir = snapshot_dir
        self.startup_seconds = 0.0
        self.phase_seconds: dict[str, float] = {}  # where start() spent its time, for tuning
        self.api_port = 0
        self._kcm_port = 0
        self._scheduler_port = 0
        self._token = secrets.token_hex(16)
        self._procs: list[_Process] = []

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def __enter__(self) -> LocalControlPlane:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        begin = time.monotonic()
        assert self.bin_dir is not None and self.log_dir is not None
        if missing := missing_binaries(self.bin_dir):
            raise ControlPlaneError(
                f"missing in {self.bin_dir}: {', '.join(missing)} (run tools/build-k8s-bins.sh)"
            )
        self.log_dir.mkdir(parents=True, exist_ok=True)

        def phase(name: str, step: Callable[[], object]) -> None:
            started = time.monotonic()
            step()
            self.phase_seconds[name] = time.monotonic() - started

        third_party_files = third_party_crd_files()
        snapshot = self.snapshot_dir / _snapshot_key(self.bin_dir, third_party_files)
        try:
            if not snapshot.is_dir():
                phase("etcd snapshot", lambda: self._make_snapshot(load_crds(third_party_files), snapshot))
            shutil.copytree(snapshot / "etcd", self.work_dir / "etcd")
            phase("etcd+apiserver", self._start_apiserver)
            phase("nodes", self._create_nodes)  # before the components' startup keeps the apiserver busy
            phase("spawn components", self._start_components)
            # The third-party CRDs come with the snapshot; only Kaizen's own are applied.
            phase("kaizen crds", lambda: self.install_crds(load_crds(kaizen_crd_files())))
            refs = [CrdRef(*ref) for ref in json.loads((snapshot / "crds.json").read_text())]
            phase("third-party crds", lambda: self.wait_established(refs))
            phase("components ready", self._wait_components_ready)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - begin

    def stop(self, timeout: float = 15) -> None:
        """Terminate the clients first, then the apiserver, then etcd; kill what outlives ``timeout``."""
        self.close()
        by_name = {p.name: p for p in self._procs}
        waves = [["kwok", "kube-scheduler", "kube-controller-manager"], ["kube-apiserver"], ["etcd"]]
        deadline = time.monotonic() + timeout
        for wave in waves:
            procs = [by_name[name] for name in wave if name in by_name]
            for proc in procs:
                if proc.popen.poll() is None:
                    proc.popen.terminate()
            for proc in procs:
                try:
                    proc.popen.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.popen.kill()
                    proc.popen.wait()
        self._procs.clear()

    def _make_snapshot(self, crds: list[dict[str, Any]], snapshot: Path) -> None:
        """First start with these binaries and third-party CRDs: install the CRDs into the fresh etcd,
        stop it, and keep a copy of its data for later starts. Installing them costs the apiserver tens
        of CPU-seconds; finding them in etcd at boot costs it almost nothing."""
        self._start_apiserver()
        self.install_crds(crds)
        self.stop()
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=snapshot.parent))
        try:
            shutil.move(self.work_dir / "etcd", staging / "etcd")
            # The CRDs' names for wait_established, so later starts need not parse their YAML.
            (staging / "crds.json").write_text(json.dumps([CrdRef.of(crd) for crd in crds]))
            with contextlib.suppress(OSError):  # a parallel session made the same snapshot first
                staging.rename(snapshot)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        for old in snapshot.parent.iterdir():  # each is ~100 MB; keys only change with binaries or CRDs
            if old != snapshot and not old.name.startswith("."):
                shutil.rmtree(old, ignore_errors=True)

    def check_alive(self) -> None:
        """Raise ControlPlaneError naming the first component that has exited, with its log tail."""
        for proc in self._procs:
            if proc.popen.poll() is not None:
                raise ControlPlaneError(
                    f"{proc.name} exited with code {proc.popen.returncode}; last lines of {proc.log}:\n"
                    f"{_tail(proc.log)}"
                )

    def _spawn(self, name: str, *args: str, extra_env: dict[str, str] | None = None) -> None:
        assert self.bin_dir is not None and self.log_dir is not None
        log = self.log_dir / f"{name}.log"
        # Garbage collection is a fifth of the apiserver's startup CPU at the default GOGC=100; memory is
        # the cheap resource here.
        env = {**os.environ, "GOGC": "400", **(extra_env or {})}
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [str(self.bin_dir / name), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                env=env,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop them in order
                preexec_fn=_die_with_parent,
            )
        self._procs.append(_Process(name, popen, log))

    def _wait(self, what: str, ready: Callable[[], object], log_of: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        try:
            while not ready():
                self.check_alive()
                if time.monotonic() > deadline:
                    assert self.log_dir is not None
                    log = self.log_dir / f"{log_of}.log"
                    raise ControlPlaneError(
                        f"timed out after {timeout:g}s waiting for {what}; last lines of {log}:\n{_tail(log)}"
                    )
                time.sleep(0.1)
        finally:
            if isinstance(ready, _Probe):
                ready.close()

    def _start_apiserver(self) -> None:
        """etcd and kube-apiserver start together (the apiserver retries etcd until it answers)."""
        etcd_port, peer_port, self.api_port = _free_port(), _free_port(), _free_port()
        pki = self.work_dir / "pki"
        pki.mkdir(exist_ok=True)
        (self.work_dir / "tokens.csv").write_text(f'{self._token},admin,admin,"system:masters"\n')
        sa_key = pki / "sa.key"
        # An EC key is instant to make, and the apiserver signs ServiceAccount tokens with it (ES256).
        keygen = subprocess.Popen(
            ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(sa_key)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        etcd_url, peer_url = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
        self._spawn(
            "etcd",
            f"--data-dir={self.work_dir / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--unsafe-no-fsync",  # test data: durability is worthless, fsync latency is not
            "--log-level=warn",
        )
        _, err = keygen.communicate()
        if keygen.returncode:
            raise ControlPlaneError(f"openssl could not create {sa_key}: {err.decode(errors='replace')}")
        self._spawn(
            "kube-apiserver",
            f"--etcd-servers={etcd_url}",
            f"--cert-dir={pki}",  # the apiserver writes a self-signed serving cert here
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.api_port}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            f"--token-auth-file={self.work_dir / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",  # no Endpoints for Service "kubernetes": nothing runs in pods
            # TaintNodesByCondition would taint every new node not-ready:NoSchedule, and without the
            # node-lifecycle controller nothing removes the taint.
            "--disable-admission-plugins=TaintNodesByCondition",
            "--enable-priority-and-fairness=false",  # saves startup work; nothing here competes for the API
        )
        self._wait("etcd health", _Probe(etcd_port, "/health", tls=False), "etcd", timeout=30)
        self._wait(
            "kube-apiserver /readyz", _Probe(self.api_port, "/readyz", token=self._token), "kube-apiserver"
        )
        ca = (pki / "apiserver.crt").read_bytes()  # self-signed: the serving cert is its own trust anchor
        self.kubeconfig.write_text(kubeconfig_yaml(self.server, base64.b64encode(ca).decode(), self._token))
        self.close()  # a client made before this restart would still talk to the old port

    def _start_components(self) -> None:
        self._kcm_port, self._scheduler_port = _free_port(), _free_port()
        common = (
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez",  # probe without credentials
            "--kube-api-qps=200",  # client-side throttling would only slow the tests down
            "--kube-api-burst=400",
        )
        self._spawn(
            "kube-controller-manager",
            *common,
            f"--secure-port={self._kcm_port}",
            f"--cert-dir={self.work_dir / 'pki' / 'kcm'}",
            f"--controllers={','.join(KCM_CONTROLLERS)}",
        )
        self._spawn(
            "kube-scheduler",
            *common,
            f"--secure-port={self._scheduler_port}",
            f"--cert-dir={self.work_dir / 'pki' / 'scheduler'}",
        )
        stages = sorted(KWOK_STAGES_DIR.glob("*.yaml"))
        self._spawn(
            "kwok",
            f"--kubeconfig={self.kubeconfig}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--cidr=10.244.0.0/16",
            "--node-ip=10.0.0.2",
            *(f"--config={stage}" for stage in stages),
            # KWOK_WORKDIR keeps kwok from also loading a developer's ~/.kwok/kwok.yaml.
            extra_env={"KWOK_WORKDIR": str(self.work_dir / "kwok")},
        )

    def _create_nodes(self) -> None:
        for node in FAKE_NODES:
            self.request("POST", "/api/v1/nodes", node.manifest())

    def _wait_components_ready(self) -> None:
        kcm, scheduler = "kube-controller-manager", "kube-scheduler"
        self._wait(f"{kcm} /healthz", _Probe(self._kcm_port, "/healthz"), kcm)
        self._wait(f"{scheduler} /healthz", _Probe(self._scheduler_port, "/healthz"), scheduler)

        def nodes_ready() -> bool:
            nodes = self.request("GET", "/api/v1/nodes", query={"labelSelector": "type=kwok"})["items"]
            ready = {
                node["metadata"]["name"]
                for node in nodes
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in node["status"].get("conditions") or []
                )
            }
            return ready >= {node.name for node in FAKE_NODES}

        self._wait("fake nodes Ready", nodes_ready, "kwok")
        # Made by kcm's serviceaccount controller; proves it runs.
        self._wait(
            "ServiceAccount default/default", lambda: self.exists(DEFAULT_SA_PATH.format("default")), kcm
        )


def _namespace_name(test_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:48].strip("-")
    return f"t-{slug}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The session's cluster: ``KAIZEN_KUBECONFIG``'s if set, else a LocalControlPlane started here."""
    if existing := os.environ.get("KAIZEN_KUBECONFIG"):
        kubeconfig = Path(existing)
        if not kubeconfig.is_file():
            pytest.fail(f"KAIZEN_KUBECONFIG={existing} is not a file", pytrace=False)
        cluster = Cluster(kubeconfig)
        cluster.install_crds(load_crds(default_crd_files()))
        yield cluster
        cluster.close()
        return
    bin_dir = default_bin_dir()
    if missing := missing_binaries(bin_dir):
        reason = (
            f"control plane binaries missing in {bin_dir}: {', '.join(missing)}. Build them with "
            "tools/build-k8s-bins.sh (needs Go and the module proxy), point KUBEBUILDER_ASSETS at a "
            "directory that has them, or set KAIZEN_KUBECONFIG to a running cluster"
        )
        if os.environ.get("KAIZEN_REQUIRE_CLUSTER") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    with LocalControlPlane(tmp_path_factory.mktemp("control-plane"), bin_dir) as plane:
        yield plane


@pytest.fixture
def namespace(control_plane: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting for it to go)."""
    name = _namespace_name(request.node.name)
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kaizen.dev/test": "true"}},
    }
    control_plane.request("POST", "/api/v1/namespaces", manifest)
    # ServiceAccount admission rejects pods until the controller has made the default account.
    wait_for(
        lambda: control_plane.exists(DEFAULT_SA_PATH.format(name)), what=f"ServiceAccount {name}/default"
    )
    yield name
    control_plane.request("DELETE", f"/api/v1/namespaces/{name}", query={"propagationPolicy": "Background"})
