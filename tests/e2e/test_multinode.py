"""A two-node run as an Indexed Job + headless Service: two real pods train together over gloo.

Rank 0's address is the DNS name ``<job>-0.<service>`` (the Indexed Job's pod hostname under the
headless Service's subdomain), which the real node's cluster DNS (``kaizen_local.node.dns``) answers."""

from __future__ import annotations

import pytest
from e2e_support import create, get, pod_report, pods, watch
from kaizen_local import demomanifests as manifests
from kaizen_local.demostack import DemoStack

pytestmark = [pytest.mark.cluster, pytest.mark.real_node, pytest.mark.slow]

MODEL, PIPELINE = "two-nodes", "sft-two-nodes"


def test_two_pods_train_over_gloo_as_an_indexed_job(stack: DemoStack) -> None:
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
