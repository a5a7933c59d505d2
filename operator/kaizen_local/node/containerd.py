"""containerd for the real node: a private instance (own config, root, state and socket), CRI on.

Settings this kind of machine needs (``../shared/notes/real-node.md``): the cgroupfs driver
(``SystemdCgroup = false``, there is no systemd), ``restrict_oom_score_adj`` (the VM lacks
CAP_SYS_RESOURCE, so runc cannot lower oom_score_adj), the overlayfs snapshotter. Network namespaces
are mounted under the state dir and runc keeps its state in the run dir, so everything a pod leaves
behind is under two folders the teardown knows.

The root (images, snapshots, metadata) persists between starts, so imported images stay. Each start
first boots containerd without CRI and deletes the previous run's containers from its metadata: the
pods they belonged to died with the previous cluster, and CRI would otherwise try to recover them.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from kaizen_local.node.network import CNI_BIN_DIR

CRI_PLUGIN = "io.containerd.grpc.v1.cri"
NAMESPACE = "k8s.io"  # the namespace CRI uses
UNUSED_PLUGINS = (
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
)


class ContainerdError(RuntimeError):
    """ctr failed; the message carries its output."""


def config_toml(
    root: Path, run_dir: Path, sandbox_image: str, cni_conf_dir: Path, with_cri: bool = True
) -> str:
    """containerd 1.6's config (version 2) for this node."""
    disabled = [*UNUSED_PLUGINS, *([] if with_cri else [CRI_PLUGIN])]
    cri = f'[plugins."{CRI_PLUGIN}"]'
    runc = f"{cri[:-1]}.containerd.runtimes.runc]"
    return f"""\
version = 2
root = "{root}"
state = "{run_dir / "state"}"
disabled_plugins = {disabled!r}

[grpc]
  address = "{socket_path(run_dir)}"

[ttrpc]
  address = "{run_dir / "containerd.sock.ttrpc"}"

[debug]
  level = "warn"

{cri}
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

{cri[:-1]}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

{runc}
  runtime_type = "io.containerd.runc.v2"

{runc[:-1]}.options]
  SystemdCgroup = false
  Root = "{run_dir / "runc"}"

{cri[:-1]}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{cni_conf_dir}"
  max_conf_num = 1
"""


IMPORT = ("images", "import", "--snapshotter", "overlayfs")  # unpacked as a pull would


def socket_path(run_dir: Path) -> Path:
    return run_dir / "containerd.sock"


def ctr_command(run_dir: Path, *args: str) -> list[str]:
    """``ctr`` against this node's containerd, in CRI's namespace."""
    return ["ctr", "--address", str(socket_path(run_dir)), "--namespace", NAMESPACE, *args]


def ctr(run_dir: Path, *args: str, timeout: float = 600) -> str:
    """Run ``ctr_command`` and return its output."""
    result = subprocess.run(ctr_command(run_dir, *args), capture_output=True, text=True, timeout=timeout)
    if result.returncode:
        raise ContainerdError(f"ctr {' '.join(args)} failed: {(result.stderr or result.stdout).strip()}")
    return result.stdout


def purge_containers(run_dir: Path) -> int:
    """Delete every container (and its snapshot) from the metadata; return how many there were. Run
    against a containerd without CRI, so nothing tries to recover them."""
    names = ctr(run_dir, "containers", "list", "--quiet").split()
    for name in names:
        ctr(run_dir, "containers", "delete", name)
    return len(names)


def remove_cri_state(root: Path) -> None:
    """CRI's per-sandbox and per-container folders of a previous run (its metadata is gone by now)."""
    for kind in ("sandboxes", "containers"):
        shutil.rmtree(root / CRI_PLUGIN / kind, ignore_errors=True)


def images(run_dir: Path) -> set[str]:
    return set(ctr(run_dir, "images", "list", "--quiet").split())


def import_image(run_dir: Path, archive: Path, base_name: str = "") -> None:
    """Import an OCI archive and unpack it for the overlayfs snapshotter, as a pull would. An archive
    whose index names only a tag (buildah's do) needs ``base_name``, the repository to put it in."""
    naming = ["--base-name", base_name] if base_name else []
    ctr(run_dir, *IMPORT, *naming, str(archive))


def snapshot_keys(run_dir: Path) -> set[str]:
    """The overlayfs snapshots' keys: a committed layer's is its chain ID."""
    listing = ctr(run_dir, "snapshots", "--snapshotter", "overlayfs", "list").splitlines()[1:]
    return {line.split()[0] for line in listing if line.strip()}


def import_stream(run_dir: Path, write: Callable[[IO[bytes]], object], base_name: str) -> None:
    """``import_image`` of an archive that ``write`` streams into ctr's standard input."""
    command = ctr_command(run_dir, *IMPORT, "--base-name", base_name, "-")
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=output, stderr=subprocess.STDOUT)
        assert process.stdin is not None
        try:
            write(process.stdin)
        except BrokenPipeError:
            pass  # ctr stopped reading: its exit code and output say why
        finally:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
        if process.wait():
            output.seek(0)
            said = output.read().decode(errors="replace").strip()
            raise ContainerdError(f"ctr images import failed: {said}")


def delete_content(run_dir: Path, digests: list[str]) -> None:
    """Delete blobs from the content store (not the snapshots unpacked from them)."""
    if digests:
        ctr(run_dir, "content", "delete", *digests)
