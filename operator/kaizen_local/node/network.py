"""The real node's pod network: one Linux bridge on this machine, no route out.

Pods get addresses in ``POD_SUBNET`` on bridge ``BRIDGE`` (CNI's ``bridge`` + ``host-local``
plugins). The bridge itself holds ``HOST_ADDRESS``, the host as pods see it: servers that pods must
reach (the S3 server, the operator's progress endpoint) listen there. The CNI config sets
``isGateway: false`` (so the plugin never turns on ``net.ipv4.ip_forward``), ``ipMasq: false`` (no
NAT, no iptables rules) and no routes, so pods have only the subnet's own route: they can reach each
other and the host, and a packet to any other address has no route. The addresses exist only on the
bridge and inside the network namespaces containerd creates for pods.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

BRIDGE = "kaizen0"
POD_SUBNET = "10.77.0.0/24"
HOST_ADDRESS = "10.77.0.1"
NETWORK_NAME = "kaizen-pods"
LOOPBACK_NETWORK_NAME = "cni-loopback"  # the loopback attachment containerd's CRI makes in each pod
CNI_BIN_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
CNI_PLUGINS = ("bridge", "host-local", "loopback")
CNI_CACHE_DIR = Path("/var/lib/cni")  # libcni's result cache; containerd 1.6 cannot move it


class NetworkError(RuntimeError):
    """An ip(8) command failed; the message carries its output."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and result.returncode:
        raise NetworkError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def bridge_exists() -> bool:
    return _ip("link", "show", BRIDGE, check=False).returncode == 0


def create_bridge() -> None:
    """The bridge with the host's address, up, before the kubelet starts (it binds to that address)."""
    _ip("link", "add", BRIDGE, "type", "bridge")
    prefix = POD_SUBNET.split("/")[1]
    _ip("addr", "add", f"{HOST_ADDRESS}/{prefix}", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")


def delete_bridge() -> None:
    if bridge_exists():
        _ip("link", "del", BRIDGE)


def write_cni_config(conf_dir: Path, ipam_dir: Path) -> Path:
    """The one network containerd's CRI plugin uses; host-local keeps its leases in ``ipam_dir``."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    base = POD_SUBNET.rsplit(".", 1)[0]
    config = {
        "cniVersion": "0.4.0",
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": False,
                "ipMasq": False,
                "hairpinMode": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [
                        [{"subnet": POD_SUBNET, "rangeStart": f"{base}.10", "rangeEnd": f"{base}.250"}]
                    ],
                    "routes": [],
                    "dataDir": str(ipam_dir),
                },
            }
        ],
    }
    path = conf_dir / f"10-{NETWORK_NAME}.conflist"
    path.write_text(json.dumps(config, indent=2))
    return path


def cni_cache_files() -> list[Path]:
    """libcni caches each attachment's result under /var/lib/cni/results, named after the network.
    Only this node's containerd uses CNI on this machine, so its loopback entries are the node's too."""
    results = CNI_CACHE_DIR / "results"
    if not results.is_dir():
        return []
    return [*results.glob(f"{NETWORK_NAME}-*"), *results.glob(f"{LOOPBACK_NETWORK_NAME}-*")]


def remove_cni_cache() -> None:
    for entry in cni_cache_files():
        entry.unlink(missing_ok=True)


def kubernetes_iptables_chains() -> list[str]:
    """KUBE-* chains in the host's iptables (a kubelet adds them unless told not to); none expected."""
    chains = []
    for command in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            with contextlib.suppress(OSError):
                listing = subprocess.run([command, "-t", table, "-S"], capture_output=True, text=True).stdout
                chains += [
                    f"{command} {table} {line.split()[1]}"
                    for line in listing.splitlines()
                    if line.startswith("-N KUBE-")
                ]
    return chains
