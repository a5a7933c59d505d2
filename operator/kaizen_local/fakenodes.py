"""The kwok nodes of the local cluster: fake GPU and CPU nodes, and the labels their pods' stages read.

Pods on the fake nodes follow these rules (see the Stage files in ``kwok/``):

* a scheduled pod becomes Running and Ready at once;
* a Running pod owned by a Job exits 0 (Succeeded);
* a pod labelled ``kaizen.dev/fake-exit-code: "N"`` exits with code N (Failed), with the termination
  message from annotation ``kaizen.dev/fake-termination-message``;
* annotation ``kaizen.dev/fake-duration: "30s"`` keeps either kind Running that long first;
* a deleted pod goes away once its finalizers are gone (there is no kubelet to confirm it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Labels and annotations the kwok stages read (kwok/pod-*.yaml).
FAKE_EXIT_CODE_LABEL = "kaizen.dev/fake-exit-code"
FAKE_TERMINATION_MESSAGE_ANNOTATION = "kaizen.dev/fake-termination-message"
FAKE_DURATION_ANNOTATION = "kaizen.dev/fake-duration"


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
