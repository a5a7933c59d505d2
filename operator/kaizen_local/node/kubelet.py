"""The real node's kubelet: its configuration, for cgroup v1 and containerd 1.6 on this machine.

``failCgroupV1: false`` (v1.36 refuses cgroup v1 otherwise), ``cgroupDriver: cgroupfs`` set explicitly
(containerd 1.6 lacks the CRI RuntimeConfig call the kubelet would ask), ``oomScoreAdj: 0`` (the VM
cannot lower OOM scores). Pods' cgroups live under ``CGROUP_ROOT`` in each hierarchy, its state under
the run dir, so the teardown finds everything. Image garbage collection is off: images here cannot be
pulled again. It adds no iptables rules. Eviction thresholds are minimal: the machine is shared, and a
test pod evicted because another process filled the disk would be a false failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

NODE_NAME = "kaizen-node"
CLUSTER_DOMAIN = "cluster.local"
CGROUP_ROOT = "/kaizen"  # under each cgroup v1 hierarchy
# The real node's taint and label (see realnode.py): only pods that ask for the node run there.
NODE_LABEL = "kaizen.dev/node"
NODE_LABEL_VALUE = "real"
TAINT_KEY = "kaizen.dev/real-node"


def config(
    run_dir: Path,
    address: str,
    port: int,
    healthz_port: int,
    client_ca: Path,
    serving_cert: Path,
    serving_key: Path,
    runtime_socket: Path,
) -> dict[str, Any]:
    """The KubeletConfiguration."""
    endpoint = f"unix://{runtime_socket}"
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": CGROUP_ROOT,
        "oomScoreAdj": 0,
        "containerRuntimeEndpoint": endpoint,
        "imageServiceEndpoint": endpoint,
        "address": address,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        # Only the apiserver holds a certificate of this CA; it may do anything a kubelet API allows.
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "tlsCertFile": str(serving_cert),
        "tlsPrivateKeyFile": str(serving_key),
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "registerNode": True,
        "registerWithTaints": [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
        "podLogsDir": str(run_dir / "pod-logs"),
        "failSwapOn": False,
        "imageGCHighThresholdPercent": 100,  # 100 turns image garbage collection off
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "maxPods": 50,
        "kubeAPIQPS": 50,
        "kubeAPIBurst": 100,
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "20s",
        "resolvConf": "/etc/resolv.conf",
        # Pods resolve rank pods' names (<job>-0.<service>) with kaizen_local.node.dns on the host side.
        "clusterDNS": [address],
        "clusterDomain": CLUSTER_DOMAIN,
        # Else the kubelet adds iptables chains (KUBE-FIREWALL, canaries) for kube-proxy's sake; there
        # is no kube-proxy here, and the node must leave the host's firewall as it found it.
        "makeIPTablesUtilChains": False,
    }


def create_cgroup_root(cgroup_mount: Path = Path("/sys/fs/cgroup")) -> None:
    """The kubelet wants CGROUP_ROOT in every v1 hierarchy before it starts. A new cpuset cgroup has
    no CPUs or memory nodes until given its parent's."""
    for hierarchy in sorted(cgroup_mount.iterdir()):
        if hierarchy.name == "unified" or not (hierarchy / "cgroup.procs").exists():
            continue  # the hybrid cgroup2 mount (hugetlb only here) and non-hierarchies
        cgroup = hierarchy / CGROUP_ROOT.strip("/")
        cgroup.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / name).exists() and not (cgroup / name).read_text().strip():
                (cgroup / name).write_text((hierarchy / name).read_text())


def write_config(path: Path, settings: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def args(run_dir: Path, config_file: Path, kubeconfig: Path, node_ip: str) -> list[str]:
    return [
        f"--config={config_file}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={run_dir / 'kubelet'}",
        f"--cert-dir={run_dir / 'kubelet-pki'}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={node_ip}",
        f"--node-labels={NODE_LABEL}={NODE_LABEL_VALUE}",
        "--v=1",
    ]
