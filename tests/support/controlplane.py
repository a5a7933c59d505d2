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
import ctypes
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

K8S_VERSION = "v1.36.3"  # pinned by tools/k8s-bins/go.mod and tools/build-k8s-bins.sh
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
REPO_ROOT = Path(__file__).resolve().parents[2]
KAIZEN_CRDS_DIR = REPO_ROOT / "crds"
THIRD_PARTY_CRDS_DIR = REPO_ROOT.parent / "shared" / "third-party-crds"
KWOK_STAGES_DIR = Path(__file__).with_name("kwok")
FIELD_MANAGER = "kaizen-tests"

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
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "kaizen" / f"k8s-bin-{K8S_VERSION}"


def missing_binaries(bin_dir: Path) -> list[str]:
    return [name for name in BINARIES if not os.access(bin_dir / name, os.X_OK)]


def default_crd_files() -> list[Path]:
    """Kaizen's generated CRDs plus the third-party ones; whatever of them exists."""
    return sorted(KAIZEN_CRDS_DIR.glob("*.yaml")) + sorted(THIRD_PARTY_CRDS_DIR.rglob("*.yaml"))


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


class Cluster:
    """A reachable cluster, as tests see it: the kubeconfig plus client helpers."""

    def __init__(self, kubeconfig: Path, bin_dir: Path | None = None, log_dir: Path | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.bin_dir = bin_dir
        self.log_dir = log_dir
        self.crd_names: list[str] = []  # CRDs installed by install_crds, all Established

    @property
    def env(self) -> dict[str, str]:
        """Environment for subprocesses (kopf, kubectl, helm) that should talk to this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def api_client(self) -> client.ApiClient:
        """A new client authenticated as cluster admin; close it (or use ``with``) when done."""
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def install_crds(self, crds: list[dict[str, Any]], timeout: float = 60) -> None:
        """Server-side apply ``crds`` (idempotent, also over older versions) and wait until each is
        Established, i.e. its resources are served."""
        with self.api_client() as api, ThreadPoolExecutor(4) as pool:
            ext = client.ApiextensionsV1Api(api)

            def apply(crd: dict[str, Any]) -> None:
                # _preload_content=False: deserialising a 1 MB schema into client models takes seconds.
                ext.patch_custom_resource_definition(
                    crd["metadata"]["name"],
                    crd,
                    field_manager=FIELD_MANAGER,
                    force=True,
                    _content_type="application/apply-patch+yaml",
                    _preload_content=False,
                )

            def established(name: str) -> bool:
                raw = ext.read_custom_resource_definition(name, _preload_content=False).data
                conditions = (json.loads(raw).get("status") or {}).get("conditions") or []
                return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

            list(pool.map(apply, crds))
            for crd in crds:
                name = crd["metadata"]["name"]
                wait_for(lambda name=name: established(name), timeout, what=f"CRD {name} Established")
                self.crd_names.append(name)

    def kubeconfig_for_service_account(self, namespace: str, name: str, path: Path) -> Path:
        """Write a kubeconfig at ``path`` that authenticates as ServiceAccount ``namespace/name`` with a
        bound token, for tests of the operator's real RBAC."""
        with self.api_client() as api:
            request = {"spec": {"expirationSeconds": 3600}}
            token = client.CoreV1Api(api).create_namespaced_service_account_token(name, namespace, request)
        admin = yaml.safe_load(self.kubeconfig.read_text())
        current = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
        cluster = next(c for c in admin["clusters"] if c["name"] == current["context"]["cluster"])["cluster"]
        path.write_text(
            kubeconfig_yaml(cluster["server"], cluster["certificate-authority-data"], token.status.token)
        )
        return path


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


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


def _http_ok(url: str, token: str | None = None) -> bool:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=2, context=_PROBE_TLS
        ) as r:
            return bool(r.status == 200)
    except OSError:  # refused, reset, TLS not ready yet, HTTP 5xx while starting
        return False


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
        self, work_dir: Path, bin_dir: Path | None = None, crd_files: list[Path] | None = None
    ) -> None:
        super().__init__(work_dir / "kubeconfig", bin_dir or default_bin_dir(), work_dir / "logs")
        self.work_dir = work_dir
        self.crd_files = default_crd_files() if crd_files is None else crd_files
        self.startup_seconds = 0.0
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
        try:
            with ThreadPoolExecutor(1) as pool:
                crds = pool.submit(load_crds, self.crd_files)  # parse 4 MB of YAML while the servers boot
                self._start_apiserver()
                self._start_components()
                self._create_nodes()
                self.install_crds(crds.result())
                self._wait_components_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - begin

    def stop(self, timeout: float = 15) -> None:
        """Terminate the clients first, then the apiserver, then etcd; kill what outlives ``timeout``."""
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

    def check_alive(self) -> None:
        """Raise ControlPlaneError naming the first component that has exited, with its log tail."""
        for proc in self._procs:
            if proc.popen.poll() is not None:
                raise ControlPlaneError(
                    f"{proc.name} exited with code {proc.popen.returncode}; last lines of {proc.log}:\n"
                    f"{_tail(proc.log)}"
                )

    def _spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        assert self.bin_dir is not None and self.log_dir is not None
        log = self.log_dir / f"{name}.log"
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
        while not ready():
            self.check_alive()
            if time.monotonic() > deadline:
                assert self.log_dir is not None
                log = self.log_dir / f"{log_of}.log"
                raise ControlPlaneError(
                    f"timed out after {timeout:g}s waiting for {what}; last lines of {log}:\n{_tail(log)}"
                )
            time.sleep(0.1)

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
        )
        self._wait("etcd health", lambda: _http_ok(f"{etcd_url}/health"), "etcd", timeout=30)
        self._wait(
            "kube-apiserver /readyz", lambda: _http_ok(f"{self.server}/readyz", self._token), "kube-apiserver"
        )
        ca = (pki / "apiserver.crt").read_bytes()  # self-signed: the serving cert is its own trust anchor
        self.kubeconfig.write_text(kubeconfig_yaml(self.server, base64.b64encode(ca).decode(), self._token))

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
            env={**os.environ, "KWOK_WORKDIR": str(self.work_dir / "kwok")},
        )

    def _create_nodes(self) -> None:
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            for node in FAKE_NODES:
                core.create_node(node.manifest(), _preload_content=False)

    def _wait_components_ready(self) -> None:
        kcm, sched = f"https://127.0.0.1:{self._kcm_port}", f"https://127.0.0.1:{self._scheduler_port}"
        self._wait(
            "kube-controller-manager /healthz", lambda: _http_ok(f"{kcm}/healthz"), "kube-controller-manager"
        )
        self._wait("kube-scheduler /healthz", lambda: _http_ok(f"{sched}/healthz"), "kube-scheduler")
        with self.api_client() as api:
            core = client.CoreV1Api(api)

            def nodes_ready() -> bool:
                ready = {
                    node.metadata.name
                    for node in core.list_node(label_selector="type=kwok").items
                    if any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
                }
                return ready >= {node.name for node in FAKE_NODES}

            self._wait("fake nodes Ready", nodes_ready, "kwok")
            self._wait(
                "ServiceAccount default/default",
                lambda: _service_account_exists(core, "default"),
                "kube-controller-manager",
            )


def _service_account_exists(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespaced_service_account("default", namespace, _preload_content=False)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


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
    with control_plane.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": name, "labels": {"kaizen.dev/test": "true"}}})
        # ServiceAccount admission rejects pods until the controller has made the default account.
        wait_for(lambda: _service_account_exists(core, name), what=f"ServiceAccount {name}/default")
        yield name
        core.delete_namespace(name, propagation_policy="Background")
