"""The local control plane, started from local binaries (no Docker).

envtest runs only etcd and kube-apiserver, so Jobs never get pods and nothing is garbage-collected. The
operator needs more: Jobs whose pods are scheduled onto GPU nodes and then succeed or fail. So this
starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (fake nodes that "run" pods
by following the Stage files in ``kwok/``, see ``fakenodes``), creates fake GPU and CPU nodes, and
installs Kaizen's CRDs (``crds/*.yaml``) and the third-party ones (``../shared/third-party-crds/``),
and the chart's admission policy (who may change a PrivateModel's sharing).
Each process's command line, and why each flag is there, is in ``flags``.

Binaries come from ``$KUBEBUILDER_ASSETS``, else ``$K8S_BIN_DIR``, else
``~/.cache/kaizen/k8s-bin-<version>``, which ``tools/build-k8s-bins.sh`` fills.

Installing the third-party CRDs (4 MB of schema) costs the apiserver tens of CPU-seconds, more than the
rest of the startup. So the first start on a machine installs them into a fresh etcd, stops, and keeps
that etcd's data in ``~/.cache/kaizen/etcd-snapshots/``; later starts copy it and only apply Kaizen's
own (small, often changing) CRDs. The snapshot key covers the etcd and apiserver binaries and the
third-party CRD files, so a change to either makes a new one.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kaizen_local import flags
from kaizen_local.cluster import (
    DEFAULT_SA_PATH,
    Cluster,
    CrdRef,
    kaizen_crd_files,
    kubeconfig_yaml,
    load_crds,
    third_party_crd_files,
)
from kaizen_local.fakenodes import FAKE_NODES
from kaizen_local.node.kubelet import NODE_NAME
from kaizen_local.node.network import HOST_ADDRESS
from kaizen_local.node.realnode import RealNode
from kaizen_local.paths import CACHE_DIR, KWOK_STAGES_DIR, default_bin_dir, missing_binaries
from kaizen_local.processes import ControlPlaneError, Probe, Process, die_with_parent, free_port, tail

# Part of the etcd snapshot key; bump it when a change here or in ``flags`` alters what a snapshot must
# contain.
SNAPSHOT_FORMAT = "1"


def _snapshot_key(bin_dir: Path, crd_files: list[Path]) -> str:
    digest = hashlib.sha256(SNAPSHOT_FORMAT.encode())
    for name in ("etcd", "kube-apiserver"):
        stat = (bin_dir / name).stat()
        digest.update(f"{name} {stat.st_size} {stat.st_mtime_ns}".encode())
    for path in crd_files:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


class LocalControlPlane(Cluster):
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok on 127.0.0.1.

    ``start()`` returns once the API is ready, the controllers and scheduler are healthy, the fake nodes
    are Ready and the CRDs are Established. Call ``start()``/``stop()`` from the same long-lived thread:
    the child processes are tied to it (see ``die_with_parent``).

    With ``real_node=True`` it also starts the real node (``node.realnode``: containerd + kubelet) and
    returns once that node is Ready; check ``node.realnode.unavailable_reason`` first. The apiserver
    then listens on the pod bridge's host address instead of 127.0.0.1 (``api_address``), so pods that
    talk to it (the Helm chart's operator) reach it there; host processes reach it as well.
    """

    def __init__(
        self,
        work_dir: Path,
        bin_dir: Path | None = None,
        snapshot_dir: Path = CACHE_DIR / "etcd-snapshots",
        real_node: bool = False,
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
        self._procs: list[Process] = []
        self.node = RealNode(bin_dir or default_bin_dir()) if real_node else None
        self.api_address = HOST_ADDRESS if real_node else "127.0.0.1"

    @property
    def server(self) -> str:
        return f"https://{self.api_address}:{self.api_port}"

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
            if self.node is not None:  # every apiserver start, the snapshot's too, needs its certificates
                phase("real node prepare", self.node.prepare)
            if not snapshot.is_dir():
                phase("etcd snapshot", lambda: self._make_snapshot(load_crds(third_party_files), snapshot))
            shutil.copytree(snapshot / "etcd", self.work_dir / "etcd")
            phase("etcd+apiserver", self._start_apiserver)
            phase("nodes", self._create_nodes)  # before the components' startup keeps the apiserver busy
            phase("spawn components", self._start_components)
            # The third-party CRDs come with the snapshot; only Kaizen's own are applied.
            phase("kaizen crds", lambda: self.install_crds(load_crds(kaizen_crd_files())))
            phase("admission policies", self.install_admission_policies)
            refs = [CrdRef(*ref) for ref in json.loads((snapshot / "crds.json").read_text())]
            phase("third-party crds", lambda: self.wait_established(refs))
            phase("components ready", self._wait_components_ready)
            if self.node is not None:
                phase("real node", self._start_real_node)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - begin

    def stop(self, timeout: float = 15) -> None:
        """Stop every process (see ``_stop_processes``), then tear the real node down."""
        try:
            self._stop_processes(timeout)
        finally:
            if self.node is not None:
                self.node.teardown()

    def _stop_processes(self, timeout: float = 15) -> None:
        """Terminate the kubelet and clients first, then containerd and the apiserver, then etcd; kill
        what outlives ``timeout``."""
        self.close()
        by_name = {p.name: p for p in self._procs}
        waves = [
            ["kubelet", "dns", "kwok", "kube-scheduler", "kube-controller-manager"],
            ["containerd", "kube-apiserver"],
            ["etcd"],
        ]
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
        self._stop_processes()
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
                    f"{tail(proc.log)}"
                )

    def _spawn(
        self, name: str, *args: str, extra_env: dict[str, str] | None = None, binary: str | None = None
    ) -> None:
        assert self.bin_dir is not None and self.log_dir is not None
        log = self.log_dir / f"{name}.log"
        # Garbage collection is a fifth of the apiserver's startup CPU at the default GOGC=100; memory is
        # the cheap resource here.
        env = {**os.environ, "GOGC": "400", **(extra_env or {})}
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [binary or str(self.bin_dir / name), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                env=env,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop them in order
                preexec_fn=die_with_parent,
            )
        self._procs.append(Process(name, popen, log))

    def _wait(self, what: str, ready: Callable[[], object], log_of: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        try:
            while not ready():
                self.check_alive()
                if time.monotonic() > deadline:
                    assert self.log_dir is not None
                    log = self.log_dir / f"{log_of}.log"
                    raise ControlPlaneError(
                        f"timed out after {timeout:g}s waiting for {what}; last lines of {log}:\n{tail(log)}"
                    )
                time.sleep(0.1)
        finally:
            if isinstance(ready, Probe):
                ready.close()

    def _start_apiserver(self) -> None:
        """etcd and kube-apiserver start together (the apiserver retries etcd until it answers)."""
        etcd_port, peer_port, self.api_port = free_port(), free_port(), free_port(self.api_address)
        pki = self.work_dir / "pki"
        pki.mkdir(exist_ok=True)
        tokens = [f'{self._token},admin,admin,"system:masters"']
        node_args = []
        if self.node is not None:
            tokens.append(self.node.token_row)
            node_args = self.node.apiserver_args()
        (self.work_dir / "tokens.csv").write_text("\n".join(tokens) + "\n")
        sa_key = pki / "sa.key"
        # An EC key is instant to make, and the apiserver signs ServiceAccount tokens with it (ES256).
        keygen = subprocess.Popen(
            ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(sa_key)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        etcd_url, peer_url = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
        self._spawn("etcd", *flags.etcd(self.work_dir / "etcd", etcd_url, peer_url))
        _, err = keygen.communicate()
        if keygen.returncode:
            raise ControlPlaneError(f"openssl could not create {sa_key}: {err.decode(errors='replace')}")
        self._spawn(
            "kube-apiserver",
            *flags.apiserver(
                etcd_url, pki, self.api_port, sa_key, self.work_dir / "tokens.csv", self.api_address
            ),
            *node_args,
        )
        self._wait("etcd health", Probe(etcd_port, "/health", tls=False), "etcd", timeout=30)
        self._wait(
            "kube-apiserver /readyz",
            Probe(self.api_port, "/readyz", token=self._token, host=self.api_address),
            "kube-apiserver",
        )
        ca = (pki / "apiserver.crt").read_bytes()  # self-signed: the serving cert is its own trust anchor
        self.kubeconfig.write_text(kubeconfig_yaml(self.server, base64.b64encode(ca).decode(), self._token))
        self.close()  # a client made before this restart would still talk to the old port

    def _start_components(self) -> None:
        self._kcm_port, self._scheduler_port = free_port(), free_port()
        pki = self.work_dir / "pki"
        kcm_args = flags.controller_manager(self.kubeconfig, self._kcm_port, pki)
        self._spawn("kube-controller-manager", *kcm_args)
        self._spawn("kube-scheduler", *flags.scheduler(self.kubeconfig, self._scheduler_port, pki))
        self._spawn(
            "kwok",
            *flags.kwok(self.kubeconfig, sorted(KWOK_STAGES_DIR.glob("*.yaml"))),
            # KWOK_WORKDIR keeps kwok from also loading a developer's ~/.kwok/kwok.yaml.
            extra_env={"KWOK_WORKDIR": str(self.work_dir / "kwok")},
        )

    def _start_real_node(self) -> None:
        assert self.node is not None
        ca_data = base64.b64encode((self.work_dir / "pki" / "apiserver.crt").read_bytes()).decode()
        dns_args = ["--address", HOST_ADDRESS, "--kubeconfig", str(self.kubeconfig)]
        self._spawn("dns", "-m", "kaizen_local.node.dns", *dns_args, binary=sys.executable)
        self.node.start(self._spawn, self.server, ca_data, kubeconfig_yaml)

        def ready() -> bool:
            node = self.request("GET", f"/api/v1/nodes/{NODE_NAME}", missing_ok=True)
            conditions = (node or {}).get("status", {}).get("conditions") or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        self._wait(f"real node {NODE_NAME} Ready", ready, "kubelet", timeout=120)

    def _create_nodes(self) -> None:
        for node in FAKE_NODES:
            self.request("POST", "/api/v1/nodes", node.manifest())

    def _wait_components_ready(self) -> None:
        kcm, scheduler = "kube-controller-manager", "kube-scheduler"
        self._wait(f"{kcm} /healthz", Probe(self._kcm_port, "/healthz"), kcm)
        self._wait(f"{scheduler} /healthz", Probe(self._scheduler_port, "/healthz"), scheduler)

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
