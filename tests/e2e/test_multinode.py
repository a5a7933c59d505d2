"""A two-node run as an Indexed Job + headless Service: two real pods train together over gloo.

Rank 0's address is the DNS name ``<job>-0.<service>`` (the Indexed Job's pod hostname under the
headless Service's subdomain), so the cluster needs a DNS server for Services and the kubelet's
``clusterDNS`` pointing at it; the local cluster's real node has none yet, and the test says so."""

from __future__ import annotations

import pytest
import yaml
from e2e_support import create, get, pod_report, pods, watch
from kaizen_local import demomanifests as manifests
from kaizen_local.controlplane import LocalControlPlane
from kaizen_local.demostack import DemoStack
from support.realnode import RealNodeClusters

pytestmark = [pytest.mark.cluster, pytest.mark.real_node, pytest.mark.slow]

MODEL, PIPELINE = "two-nodes", "sft-two-nodes"


def cluster_dns(cluster: LocalControlPlane) -> list[str]:
    assert cluster.node is not None
    config = yaml.safe_load((cluster.node.run_dir / "kubelet.yaml").read_text())
    return list(config.get("clusterDNS") or [])


@pytest.fixture
def dns(real_node_clusters: RealNodeClusters) -> None:
    if not cluster_dns(real_node_clusters.get()):
        pytest.skip(
            "the real node's kubelet has no clusterDNS (the local cluster runs no DNS server), so the "
            "Indexed Job's rendezvous name <job>-0.<service> cannot resolve in the pods"
        )


def test_two_pods_train_over_gloo_as_an_indexed_job(dns: None, stack: DemoStack) -> None:
    ns = stack.namespace("e2e-two-nodes")
    create(stack, ns, manifests.private_model(MODEL))
    resources = {**manifests.CPU_ONLY, "nodes": 2, "multiNodeBackend": "indexedjob"}
    create(stack, ns, manifests.pipeline(PIPELINE, MODEL, resources=resources))
    done = watch(
        stack,
        lambda: get(stack, ns, "finetunepipelines", PIPELINE),
        lambda o: (o.get("status") or {}).get("phase") in {"Succeeded", "Failed"},
        timeout=900,
    )
    run = done["status"]["runs"][-1]
    assert run["phase"] == "Succeeded", (run, pod_report(stack))
    assert run["jobKind"] == "Job" and run["nodes"] == 2
    train = [p for p in pods(stack, ns) if p["metadata"]["labels"].get("kaizen.dev/component") == "train"]
    assert sorted(p["status"]["phase"] for p in train) == ["Succeeded", "Succeeded"]
