"""Tear down whatever a real node left behind, whether it stopped cleanly or was killed.

Everything the node creates is found from three fixed places, never from a record it might not have
written: processes whose command line names the node's run dir (kubelet, containerd, its shims),
processes in the pod cgroups under ``kubelet.CGROUP_ROOT``, mounts under the run dir or containerd's
root (container root filesystems, shm, network namespaces, volume tmpfs), the bridge, and libcni's
cache files for the node's network. The node adds no iptables rules (``leftovers`` checks) and
never touches ``net.ipv4.ip_forward``, so there is nothing to undo there. Runs at every start too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from kaizen_local.node import network
from kaizen_local.node.kubelet import CGROUP_ROOT

CGROUP_MOUNT = Path("/sys/fs/cgroup")
DAEMONS = frozenset({"kubelet", "containerd", "containerd-shim-runc-v2"})
_MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def node_processes(run_dir: Path) -> list[int]:
    """Pids of the node's daemons: a kubelet, containerd or shim whose command line names ``run_dir``."""
    needle = str(run_dir).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                daemon = os.path.basename(os.readlink(entry / "exe")) in DAEMONS
                if daemon and needle in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
    return pids


def pod_cgroups() -> list[Path]:
    """Every cgroup under CGROUP_ROOT in every hierarchy, deepest first."""
    found: list[Path] = []
    for hierarchy in CGROUP_MOUNT.iterdir() if CGROUP_MOUNT.is_dir() else []:
        top = hierarchy / CGROUP_ROOT.strip("/")
        if top.is_dir():
            found += [Path(d) for d, _, _ in os.walk(top)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _cgroup_pids(cgroups: list[Path]) -> set[int]:
    pids: set[int] = set()
    for cgroup in cgroups:
        with contextlib.suppress(OSError):
            pids |= {int(p) for p in (cgroup / "cgroup.procs").read_text().split()}
    return pids


def _kill(pids: set[int] | list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def kill_all(run_dir: Path, timeout: float = 10) -> None:
    """SIGKILL the node's daemons and every process in its pod cgroups, until none is left."""
    deadline = time.monotonic() + timeout
    while True:
        pids = set(node_processes(run_dir)) | _cgroup_pids(pod_cgroups())
        pids.discard(os.getpid())
        if not pids:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"processes of the real node survive SIGKILL: {sorted(pids)}")
        _kill(pids)
        time.sleep(0.1)


def mounts_under(*dirs: Path) -> list[str]:
    """Mount points at or below ``dirs`` in this mount namespace, deepest first."""
    prefixes = [str(d.resolve()) for d in dirs]
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            points.append(point)
    return sorted(points, key=lambda p: p.count("/"), reverse=True)


def unmount_all(*dirs: Path) -> None:
    for point in mounts_under(*dirs):
        if _libc.umount2(point.encode(), _MNT_DETACH) != 0:
            errno = ctypes.get_errno()
            if errno not in (22, 2):  # EINVAL: no longer a mount point; ENOENT: gone already
                raise OSError(errno, f"umount {point}: {os.strerror(errno)}")


def remove_cgroups(timeout: float = 10) -> None:
    """rmdir the pod cgroups, deepest first; a cgroup is busy for a moment after its last process."""
    deadline = time.monotonic() + timeout
    while remaining := pod_cgroups():
        for cgroup in remaining:
            with contextlib.suppress(OSError):
                cgroup.rmdir()
        if not pod_cgroups():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"cgroups of the real node cannot be removed: {pod_cgroups()[:5]}")
        _kill(_cgroup_pids(pod_cgroups()))
        time.sleep(0.1)


def teardown(run_dir: Path, containerd_root: Path) -> None:
    """Leave no process, mount, cgroup, network namespace, bridge or CNI state of the node behind. The
    containerd root (images) stays; its containers are purged at the next start."""
    kill_all(run_dir)
    unmount_all(run_dir, containerd_root)
    if leftover := mounts_under(run_dir, containerd_root):
        raise OSError(f"mounts survive the teardown: {leftover[:5]}")
    shutil.rmtree(run_dir, ignore_errors=True)
    remove_cgroups()
    network.delete_bridge()
    network.remove_cni_cache()


def leftovers(run_dir: Path, containerd_root: Path) -> Iterator[str]:
    """What of the node is still there, in words (empty after a teardown); the tests check it."""
    if pids := node_processes(run_dir):
        yield f"processes {pids}"
    if points := mounts_under(run_dir, containerd_root):
        yield f"mounts {points[:5]}"
    if cgroups := pod_cgroups():
        yield f"cgroups {[str(c) for c in cgroups[:5]]}"
    if network.bridge_exists():
        yield f"bridge {network.BRIDGE}"
    if run_dir.exists():
        yield f"run dir {run_dir}"
    if cached := network.cni_cache_files():
        yield f"CNI cache {[str(c) for c in cached[:3]]}"
    if chains := network.kubernetes_iptables_chains():
        yield f"iptables chains {chains[:3]}"
