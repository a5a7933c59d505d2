"""Kaizen's main job on the real node: a FineTunePipeline trains the tiny model (catalog entry whose
mirror is the local S3 server, a ../shared/datasets file) in real preflight and training pods, then an
EvalJob scores the new version, every pod admitted under the restricted Pod Security profile."""

from __future__ import annotations

from typing import Any

import pytest
from e2e_support import create, get, pod_report, pods, watch
from kaizen_local import demomanifests as manifests
from kaizen_local.demostack import MODELS_BUCKET, DemoStack
from kaizen_local.node.kubelet import NODE_NAME

pytestmark = [pytest.mark.cluster, pytest.mark.real_node, pytest.mark.slow]

MODEL, PIPELINE, EVAL = "tiny-assistant", "sft-tiny", "eval-tiny"
TRAINED: dict[str, Any] = {}  # the first test's version, scored by the second


@pytest.fixture(scope="module")
def ns(stack: DemoStack) -> str:
    name = stack.namespace("e2e-pipeline")
    create(stack, name, manifests.private_model(MODEL))
    return name


def ready_version(model: dict[str, Any]) -> dict[str, Any] | None:
    versions = (model.get("status") or {}).get("versions") or []
    return next((v for v in versions if v.get("ready")), None)


def test_pipeline_trains_in_real_pods_and_adds_a_ready_version(stack: DemoStack, ns: str) -> None:
    create(stack, ns, manifests.pipeline(PIPELINE, MODEL, hyperparameters=manifests.WATCHED))
    seen: list[dict[str, Any]] = []
    done = watch(
        stack,
        lambda: get(stack, ns, "finetunepipelines", PIPELINE),
        lambda o: (o.get("status") or {}).get("phase") in {"Succeeded", "Failed"},
        timeout=900,
        seen=seen,
    )
    run = done["status"]["runs"][-1]
    assert run["phase"] == "Succeeded", (run, pod_report(stack))
    assert run["metrics"]["trainTotalLoss"] > 0
    # the preflight's plan is what the trainer did (records whose prompt fills 128 tokens are dropped)
    assert run["progress"]["step"] == run["progress"]["totalSteps"] == run["preflight"]["totalSteps"]
    assert run["preflight"]["maskedRecords"] > 0
    live = [
        s["currentRun"]["progress"]
        for s in seen
        if (s.get("currentRun") or {}).get("phase") == "Running" and (s["currentRun"].get("progress") or {})
    ]
    assert any(0 < p["step"] < p["totalSteps"] for p in live), f"no live progress while training: {live}"

    ran = {p["metadata"]["labels"].get("kaizen.dev/component"): p for p in pods(stack, ns)}
    for component in ("preflight", "train"):
        pod = ran[component]
        assert pod["spec"]["nodeName"] == NODE_NAME
        assert pod["status"]["phase"] == "Succeeded", pod["status"]
    namespace = stack.cluster.request("GET", f"/api/v1/namespaces/{ns}")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"

    model = watch(
        stack, lambda: get(stack, ns, "privatemodels", MODEL), lambda m: ready_version(m) is not None, 120
    )
    version = ready_version(model)
    assert version is not None and version["name"] == run["outputVersion"]
    TRAINED["version"] = version["name"]


def test_evaljob_scores_the_new_version_with_the_standard_suite(stack: DemoStack, ns: str) -> None:
    if "version" not in TRAINED:
        pytest.skip("the pipeline test did not produce a version")
    create(stack, ns, manifests.evaljob(EVAL, MODEL, TRAINED["version"]))
    done = watch(
        stack,
        lambda: get(stack, ns, "evaljobs", EVAL),
        lambda o: (o.get("status") or {}).get("phase") in {"Succeeded", "Failed"},
        timeout=600,
    )
    status = done["status"]
    assert status["phase"] == "Succeeded", (status, pod_report(stack))
    assert set(status["results"]) >= {"bleu", "rouge1", "rougeL", "fuzzy_match"}, status["results"]
    assert all(0 <= v <= 100 for v in status["results"].values())
    assert stack.s3 is not None and (status.get("resultsUri") or "").startswith("s3://"), status
    assert list((stack.s3.root / MODELS_BUCKET / "evaluations" / EVAL).rglob("*.json")), "no results file"
    eval_pods = [p for p in pods(stack, ns) if p["metadata"]["labels"].get("kaizen.dev/component") == "eval"]
    assert eval_pods and all(p["spec"]["nodeName"] == NODE_NAME for p in eval_pods)
