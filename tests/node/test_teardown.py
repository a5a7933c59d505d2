"""The real node leaves nothing behind: no process, mount, network namespace, cgroup, bridge or CNI
state, whether it stops cleanly or is killed (then the next start's teardown removes the rest)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kaizen_local.node.network import BRIDGE
from kaizen_local.node.realnode import RealNode, RealNodeBusy
from kaizen_local.node.teardown import leftovers, teardown
from kaizen_local.paths import default_bin_dir
from support.realnode import RealNodeClusters

pytestmark = [pytest.mark.cluster, pytest.mark.real_node]

HOLDER = Path(__file__).with_name("hold_node.py")
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


@pytest.fixture
def node_holder(real_node_clusters: RealNodeClusters, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A process holding a running node with one pod; the shared cluster steps aside meanwhile."""
    real_node_clusters.release()  # the node is a machine-wide singleton
    process = subprocess.Popen(
        [sys.executable, str(HOLDER), str(tmp_path / "cluster")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "running", or "" when it failed (its traceback is on stderr)
        assert line.strip() == "running", f"the node holder did not start (exit {process.poll()})"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        kill_processes_under(tmp_path / "cluster")


def kill_processes_under(work_dir: Path) -> None:
    """The holder's control plane (kube-apiserver, seen here) can outlive a SIGKILLed holder even with
    PDEATHSIG=SIGTERM; end whatever still names the holder's folder, so the test leaks no process."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if str(work_dir).encode() in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
        except OSError:  # gone already, or not ours to read
            continue


def what_is_left(node: RealNode) -> list[str]:
    return list(leftovers(node.run_dir, node.containerd_root))


def test_clean_stop_leaves_nothing(node_holder: subprocess.Popen[str]) -> None:
    node = RealNode(default_bin_dir())
    forward_before = IP_FORWARD.read_text()
    running = what_is_left(node)
    assert any(item.startswith("mounts") for item in running)  # the pod's rootfs, shm and netns
    assert f"bridge {BRIDGE}" in running

    assert node_holder.stdin is not None
    node_holder.stdin.write("stop\n")
    node_holder.stdin.flush()
    assert node_holder.wait(timeout=60) == 0

    assert what_is_left(node) == []
    assert IP_FORWARD.read_text() == forward_before  # the node never turns forwarding on


def test_a_killed_node_is_torn_down_at_the_next_start(
    node_holder: subprocess.Popen[str], real_node_clusters: RealNodeClusters
) -> None:
    node = RealNode(default_bin_dir())
    os.kill(node_holder.pid, signal.SIGKILL)
    node_holder.wait()

    survivors = what_is_left(node)  # the shim and the pod's process outlive the kill, and its mounts
    assert any(item.startswith("mounts") for item in survivors), survivors
    assert any(item.startswith("cgroups") for item in survivors), survivors

    teardown(node.run_dir, node.containerd_root)
    assert what_is_left(node) == []
    # A new node starts on the same containerd root: the dead run's containers are purged first.
    plane = real_node_clusters.get()
    assert plane.node is not None and "containerd purge" in plane.node.phase_seconds


def test_a_second_node_waits_its_turn_and_touches_nothing(tmp_path: Path) -> None:
    """While another process holds the node's lock, prepare refuses and teardown leaves its files."""
    node = RealNode(default_bin_dir(), node_dir=tmp_path)
    (tmp_path / "run").mkdir()
    marker = tmp_path / "run" / "theirs"
    marker.touch()
    with (tmp_path / "lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242")
        held.flush()
        with pytest.raises(RealNodeBusy, match="in use by pid 4242"):
            node.prepare()
        node.teardown()
    assert marker.exists()
