"""A training container killed at the node level (SIGKILL through containerd, as an OOM killer or a
crashed node would) is replaced by the Job, and the new pod resumes from the last checkpoint the
killed one uploaded: the run still ends Succeeded, and its report names the checkpoint."""

from __future__ import annotations

import json
from typing import Any

import pytest
from e2e_support import create, get, pod_report, pods, watch
from kaizen_local import demomanifests as manifests
from kaizen_local.demostack import MODELS_BUCKET, DemoStack
from kaizen_local.node import containerd

pytestmark = [pytest.mark.cluster, pytest.mark.real_node, pytest.mark.slow]

MODEL, PIPELINE = "resumed", "sft-killed"
# 500 records (some dropped: their prompt fills 128 tokens) in batches of 5: about 60 steps, a checkpoint
# every 10; killed once a checkpoint is uploaded.
SLOW = {**manifests.HYPERPARAMETERS, "batchSize": 5, "checkpointSteps": 10}


def train_pods(stack: DemoStack, ns: str) -> list[dict[str, Any]]:
    return [p for p in pods(stack, ns) if p["metadata"]["labels"].get("kaizen.dev/component") == "train"]


def checkpoints(stack: DemoStack) -> list[str]:
    assert stack.s3 is not None
    root = stack.s3.root / MODELS_BUCKET / MODEL / ".checkpoints"
    return sorted(str(p.relative_to(root)) for p in root.glob("*/checkpoint-*")) if root.is_dir() else []


def test_a_container_killed_mid_run_resumes_from_its_checkpoint(stack: DemoStack) -> None:
    ns = stack.namespace("e2e-resume")
    create(stack, ns, manifests.private_model(MODEL))
    create(stack, ns, manifests.pipeline(PIPELINE, MODEL, hyperparameters=SLOW))
    pipeline = lambda: get(stack, ns, "finetunepipelines", PIPELINE)  # noqa: E731

    def checkpointed(obj: dict[str, Any]) -> bool:
        progress = ((obj.get("status") or {}).get("currentRun") or {}).get("progress") or {}
        return progress.get("step", 0) >= 15 and bool(checkpoints(stack))

    watch(stack, pipeline, checkpointed, timeout=900)
    (victim,) = [p for p in train_pods(stack, ns) if p["status"].get("phase") == "Running"]
    container_id = victim["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    assert stack.cluster.node is not None
    containerd.ctr(stack.cluster.node.run_dir, "tasks", "kill", "--signal", "SIGKILL", container_id)

    done = watch(
        stack,
        pipeline,
        lambda o: (o.get("status") or {}).get("phase") in {"Succeeded", "Failed"},
        timeout=900,
    )
    run = done["status"]["runs"][-1]
    assert run["phase"] == "Succeeded", (run, pod_report(stack))
    phases = sorted(p["status"].get("phase") for p in train_pods(stack, ns))
    assert phases == ["Failed", "Succeeded"], pod_report(stack)
    assert stack.s3 is not None
    report_file = stack.s3.root / MODELS_BUCKET / MODEL / run["outputVersion"] / "training_report.json"
    report = json.loads(report_file.read_text())
    assert (report.get("resumedFrom") or "").startswith("checkpoint-"), report.get("resumedFrom")
    assert report["globalStep"] == run["preflight"]["totalSteps"] == run["progress"]["step"]
