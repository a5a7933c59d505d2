"""Who uses a PrivateModel, read from objects as the API server stores them (CRD defaults and pruning
applied) with status written the way the reconcilers write it. No operator runs in this module: it would
record the runs whose absence is the point."""

from __future__ import annotations

import pytest
from api.manifests import load_example
from kaizen_api.base import GROUP, VERSION
from kaizen_operator.registry.deletion import model_users

from registry.helpers import evaljob

pytestmark = [pytest.mark.cluster]


def test_a_rerun_asked_for_and_not_yet_recorded_holds_the_model(kube, namespace) -> None:
    """The gap between a runToken change (or a new object) and the next pass recording its run, which a
    running operator closes too fast to observe."""
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}"
    job = evaljob("rerun", "bucket", "busy")
    job["spec"]["runToken"] = "a"
    pipeline = load_example("finetune-sft-alpaca.yaml")
    pipeline["spec"]["output"] = {"privateModel": "busy"}
    job_path, pipeline_path = f"{base}/evaljobs/rerun", f"{base}/finetunepipelines/sft-alpaca"
    kube.request("POST", f"{base}/evaljobs", job)
    kube.request("POST", f"{base}/finetunepipelines", pipeline)
    run = {"runName": "testj_busy-1", "runToken": "a", "phase": "Succeeded"}
    kube.merge_patch(f"{job_path}/status", {"status": {"phase": "Succeeded", "runs": [run]}})
    kube.merge_patch(f"{pipeline_path}/status", {"status": {"observedGeneration": 1, "lastRunToken": ""}})

    def users() -> list[str]:
        return model_users("busy", kube.list(f"{base}/finetunepipelines"), kube.list(f"{base}/evaljobs"))

    assert users() == [], "finished runs of the spec's tokens hold nothing"
    kube.merge_patch(job_path, {"spec": {"runToken": "b"}})
    kube.merge_patch(pipeline_path, {"spec": {"trigger": {"runToken": "2"}}})
    requested = "a run requested by spec.{}runToken is not recorded yet"
    assert users() == [
        f"FineTunePipeline sft-alpaca ({requested.format('trigger.')})",
        f"EvalJob rerun ({requested.format('')})",
    ]
