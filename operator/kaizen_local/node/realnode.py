"""One real node for the local cluster: containerd + runc + bridge CNI + kubelet on this machine.

kwok keeps playing the GPU nodes and scale; this node really runs pods. It is a machine-wide
singleton (one bridge, one set of pod cgroups), guarded by a lock file: a second session asking for it
gets a clear error. It starts only where it can (root on Linux with Debian's containerd, runc,
containernetworking-plugins and busybox-static, plus the kubelet from tools/build-k8s-bins.sh);
``unavailable_reason`` says why not otherwise.

Scheduling: the node is tainted ``kaizen.dev/real-node=true:NoSchedule`` and labelled
``kaizen.dev/node=real``, so the pods of existing workloads keep going to kwok's nodes. A namespace
annotated with ``NAMESPACE_ANNOTATIONS`` runs all its pods on the real node: the apiserver's
PodNodeSelector and PodTolerationRestriction admission plugins add the node selector and toleration to
each pod, so the operator's pods need no change. kwok manages only nodes annotated
``kwok.x-k8s.io/node: fake``, so its stages never touch pods bound here.

Lifecycle, driven by ``LocalControlPlane(real_node=True)``: ``prepare`` (lock, teardown of any
leftovers, certificates, bridge) before the apiserver starts, since the apiserver needs the kubelet
client certificate; ``start`` once the control plane is up (containerd, images, kubelet, node Ready);
``teardown`` after the processes have stopped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from kaizen_local.node import containerd, imagestream, kubelet, network, oci
from kaizen_local.node.pki import NodePki
from kaizen_local.node.teardown import teardown
from kaizen_local.paths import CACHE_DIR
from kaizen_local.processes import ControlPlaneError, free_port

NODE_DIR = Path(os.environ.get("KAIZEN_NODE_DIR") or CACHE_DIR / "node")
HOST_TOOLS = {  # command -> the Debian package that brings it
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "ip": "iproute2",
    "gcc": "gcc",
    "openssl": "openssl",
}
NAMESPACE_ANNOTATIONS = {
    "scheduler.alpha.kubernetes.io/node-selector": f"{kubelet.NODE_LABEL}={kubelet.NODE_LABEL_VALUE}",
    "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(
        [{"key": kubelet.TAINT_KEY, "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    ),
}
Spawn = Callable[..., None]  # LocalControlPlane._spawn(name, *args, binary=...)


class RealNodeBusy(ControlPlaneError):
    """Another process on this machine runs the real node."""


def unavailable_reason(bin_dir: Path) -> str | None:
    """Why the real node cannot start on this machine, or None when it can."""
    if sys.platform != "linux":
        return "the real node needs Linux"
    if os.geteuid() != 0:
        return "the real node needs root (containerd, runc, a bridge, cgroups)"
    packages = {pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None}
    if any(not (network.CNI_BIN_DIR / p).exists() for p in network.CNI_PLUGINS):
        packages.add("containernetworking-plugins")
    if not oci.BUSYBOX_BINARY.is_file():
        packages.add("busybox-static")
    if packages:
        return f"the real node needs the Debian packages {' '.join(sorted(packages))} (tools/dev.sh setup)"
    if not os.access(bin_dir / "kubelet", os.X_OK):
        return f"no kubelet in {bin_dir} (run tools/build-k8s-bins.sh)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlayfs, which containerd's snapshotter needs"
    if not Path("/sys/fs/cgroup/memory").is_dir():
        return "no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory"
    return None


class RealNode:
    """The node's files: ``run`` (state, sockets, certificates, kubelet root; wiped at every start) and
    ``containerd`` (images and snapshots; kept, so images are imported once)."""

    def __init__(self, bin_dir: Path, node_dir: Path = NODE_DIR) -> None:
        self.bin_dir = bin_dir
        self.node_dir = node_dir
        self.run_dir = node_dir / "run"
        self.containerd_root = node_dir / "containerd"
        self.image_dir = node_dir / "images"
        self.token = secrets.token_hex(16)
        self.pki = NodePki(self.run_dir / "pki")
        self.pause_image = ""
        self.busybox_image = ""
        self._pause_archive = self._busybox_archive = Path()
        self.phase_seconds: dict[str, float] = {}
        self._lock: IO[str] | None = None

    @property
    def token_row(self) -> str:
        """The kubelet's line in the apiserver's token file: a node identity for the Node authorizer."""
        name = kubelet.NODE_NAME
        return f'{self.token},system:node:{name},{name},"system:nodes"'

    def apiserver_args(self) -> list[str]:
        return [
            f"--kubelet-client-certificate={self.pki.apiserver_client_cert}",
            f"--kubelet-client-key={self.pki.apiserver_client_key}",
            f"--kubelet-certificate-authority={self.pki.ca_cert}",
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def prepare(self) -> None:
        """Take the machine's node lock, remove what an earlier node left, make certificates and the
        bridge. Runs before the apiserver starts."""
        self.node_dir.mkdir(parents=True, exist_ok=True)
        lock = (self.node_dir / "lock").open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise RealNodeBusy(f"the real node is in use by pid {holder}; only one can run") from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock = lock
        self._timed("teardown of leftovers", lambda: teardown(self.run_dir, self.containerd_root))
        self.run_dir.mkdir(parents=True)
        NodePki.create(self.pki.dir, kubelet.NODE_NAME, network.HOST_ADDRESS)
        network.create_bridge()
        network.write_cni_config(self.run_dir / "cni", self.run_dir / "cni-ipam")

    def start(self, spawn: Spawn, server: str, ca_data: str, kubeconfig_yaml: Callable[..., str]) -> None:
        """containerd (after purging the previous run's containers), the pause and busybox images, then the
        kubelet. Returns once containerd answers and the kubelet has started; ``wait_ready`` follows."""
        self._timed("images built", self._build_images)
        if self.containerd_root.is_dir():
            self._timed("containerd purge", self._purge)
        config = self.run_dir / "containerd.toml"
        config.write_text(self._containerd_config(with_cri=True))
        spawn("containerd", "--config", str(config), binary=shutil.which("containerd"))
        self._timed("containerd up", self._wait_containerd)
        self._timed("images imported", self._import_images)
        node_kubeconfig = self.run_dir / "kubelet.kubeconfig"
        node_kubeconfig.write_text(kubeconfig_yaml(server, ca_data, self.token))
        port, healthz_port = free_port(network.HOST_ADDRESS), free_port()
        settings = kubelet.config(
            self.run_dir,
            network.HOST_ADDRESS,
            port,
            healthz_port,
            self.pki.ca_cert,
            self.pki.kubelet_cert,
            self.pki.kubelet_key,
            containerd.socket_path(self.run_dir),
        )
        config_file = kubelet.write_config(self.run_dir / "kubelet.yaml", settings)
        kubelet.create_cgroup_root()
        args = kubelet.args(self.run_dir, config_file, node_kubeconfig, network.HOST_ADDRESS)
        spawn("kubelet", *args, binary=str(self.bin_dir / "kubelet"))

    def import_archive(self, reference: str, archive: Path) -> None:
        """Import an OCI archive into the node's containerd unless ``reference`` is there already."""
        if reference not in containerd.images(self.run_dir):
            containerd.import_image(self.run_dir, archive)

    def import_built(self, reference: str) -> None:
        """Import an image from buildah's storage (``runnerimage``) unless containerd has it already,
        streaming only the layers containerd lacks (``imagestream``). Other tags of its repository are
        removed, and so are the imported layer blobs once unpacked: containers start from the unpacked
        snapshots."""
        if reference in containerd.images(self.run_dir):
            return
        repository, tag = reference.rsplit(":", 1)
        image = imagestream.stored_image(reference)
        have = containerd.snapshot_keys(self.run_dir)
        layers: list[str] = []

        def write(out: IO[bytes]) -> None:
            layers.extend(imagestream.write_archive(image, tag, have, out))

        self._timed(f"import {reference}", lambda: containerd.import_stream(self.run_dir, write, repository))
        if reference not in containerd.images(self.run_dir):
            raise ControlPlaneError(f"{reference} streamed into containerd, but it has no such image")
        containerd.delete_content(self.run_dir, layers)
        stale = [
            i for i in containerd.images(self.run_dir) if i.startswith(f"{repository}:") and i != reference
        ]
        if stale:
            containerd.ctr(self.run_dir, "images", "remove", *stale)

    def teardown(self) -> None:
        """After the kubelet and containerd have stopped: remove everything, release the lock. Does
        nothing unless ``prepare`` took the lock: the node may be another process's."""
        if self._lock is None:
            return
        try:
            self._timed("teardown", lambda: teardown(self.run_dir, self.containerd_root))
        finally:
            if self._lock is not None:
                self._lock.close()
                self._lock = None

    def _timed(self, name: str, step: Callable[[], object]) -> None:
        started = time.monotonic()
        step()
        self.phase_seconds[name] = time.monotonic() - started

    def _containerd_config(self, with_cri: bool) -> str:
        return containerd.config_toml(
            self.containerd_root, self.run_dir, self.pause_image, self.run_dir / "cni", with_cri
        )

    def _build_images(self) -> None:
        build = self.run_dir / "build"
        self.pause_image, self._pause_archive = oci.write_archive(oci.pause_image(build), self.image_dir)
        self.busybox_image, self._busybox_archive = oci.write_archive(oci.busybox_image(), self.image_dir)

    def _import_images(self) -> None:
        self.import_archive(self.pause_image, self._pause_archive)
        self.import_archive(self.busybox_image, self._busybox_archive)

    def _wait_containerd(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                containerd.ctr(self.run_dir, "version", timeout=5)
                return
            except (containerd.ContainerdError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline:
                    raise ControlPlaneError(f"containerd did not answer within {timeout:g}s") from None
                time.sleep(0.1)

    def _purge(self) -> None:
        """The previous node was killed: boot containerd without CRI and delete its old containers."""
        config = self.run_dir / "containerd-purge.toml"
        config.write_text(self._containerd_config(with_cri=False))
        log = (self.run_dir / "containerd-purge.log").open("wb")
        process = subprocess.Popen(
            ["containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            self._wait_containerd()
            containerd.purge_containers(self.run_dir)
        finally:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
        containerd.remove_cri_state(self.containerd_root)
