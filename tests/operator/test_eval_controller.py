"""The EvalJob controller's pure half: resolution to EvalRunConfig, the Job it builds, the run states."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from api.manifests import load_example
from kaizen_api.evalconfig import EvalRunConfig
from kaizen_api.evaljob import EvalJobSpec, EvalRunRecord
from kaizen_api.results import EXIT_USER_ERROR, TerminationMessage
from kaizen_operator.catalog import load_catalog
from kaizen_operator.eval_registry import merge_evaluation
from kaizen_operator.eval_resolve import resolve_eval_run
from kaizen_operator.eval_runs import EvalChildren, advance_eval, cancel_requested, new_run, run_object_name
from kaizen_operator.eval_workload import build_eval_config_map, build_eval_job, build_eval_token_secret
from kaizen_operator.resolve import ResolveError
from kaizen_operator.settings import OperatorSettings

NOW = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
UID = "0b7c6c1e-0000-4000-8000-000000000001"
SETTINGS = OperatorSettings(progress_url="http://op:8081")
CATALOG = load_catalog()


def evaljob(example: str, **spec: Any) -> dict[str, Any]:
    doc = load_example(example)
    doc["spec"].update(spec)
    doc["metadata"].update(namespace="team-a", uid=UID, generation=1)
    return doc


def private_model(files: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "support-assistant"},
        "spec": {
            "title": "t",
            "storage": {"s3": {"connection": {"name": "datahub"}, "bucket": "models", "key": "support/"}},
            **spec,
        },
        "status": {
            "latestVersion": "ft_v1",
            "versions": [
                {
                    "index": 0,
                    "name": "ft_v1",
                    "status": "ready",
                    "ready": True,
                    "tags": {"type": "LLM", "size": "0.5B", "instructionTuned": True},
                    "files": [{"name": f, "sizeBytes": 1} for f in files],
                }
            ],
        },
    }


def test_a_catalog_model_on_the_harness():
    job = evaljob("evaljob-lm-eval.yaml", stagedData={"pvc": {"claimName": "benchmarks"}})
    run = resolve_eval_run(job, "qwen_harness-1", "qwen-harness-r1-abc", CATALOG, {}, SETTINGS)
    cfg = run.config
    assert cfg.model and cfg.model.location and cfg.model.location.uri == "hf://Qwen/Qwen2.5-0.5B-Instruct"
    assert (cfg.model.modality, cfg.model.parameters, cfg.model.instruction_tuned) == (
        "text",
        494032768,
        True,
    )
    assert cfg.staged_data and cfg.staged_data.uri == "/var/run/kaizen/volumes/benchmarks"
    assert cfg.progress and cfg.progress.url == "http://op:8081/evalruns/team-a/qwen-harness-r1-abc"
    EvalRunConfig.model_validate_json(run.config_json)  # what the runner reads back


def test_a_registry_version_full_or_adapter_on_its_base():
    job = evaljob("evaljob-standard.yaml")
    full = {"PrivateModel/support-assistant": private_model(["model/config.json", "manifest.json"])}
    cfg = resolve_eval_run(job, "t-1", "o-r1", CATALOG, full, SETTINGS).config
    assert cfg.model and cfg.model.location and cfg.model.location.uri == "s3://models/support/ft_v1"
    assert cfg.model.adapter is None and cfg.model.parameters == 500_000_000
    adapter = private_model(["adapter/adapter_config.json"], baseModel="Qwen2.5-0.5B-Instruct")
    run = resolve_eval_run(job, "t-1", "o-r1", CATALOG, {"PrivateModel/support-assistant": adapter}, SETTINGS)
    model = run.config.model
    assert model and model.location and model.location.uri == "hf://Qwen/Qwen2.5-0.5B-Instruct"
    assert model.adapter and model.adapter.uri == "s3://models/support/ft_v1"
    assert run.private_model == ("support-assistant", "ft_v1")
    orphan = private_model(["adapter/adapter_config.json"])
    with pytest.raises(ResolveError, match="is a LoRA adapter"):
        resolve_eval_run(job, "t-1", "o-r1", CATALOG, {"PrivateModel/support-assistant": orphan}, SETTINGS)


def test_recorded_artifacts_say_whether_a_version_is_an_adapter_and_where_it_is():
    job = evaljob("evaljob-standard.yaml")
    adapter = private_model([], baseModel="Qwen2.5-0.5B-Instruct")
    adapter["status"]["versions"][0]["artifacts"] = {"adapter": "adapter"}
    model = resolve_eval_run(
        job, "t-1", "o-r1", CATALOG, {"PrivateModel/support-assistant": adapter}, SETTINGS
    ).config.model
    assert model and model.location and model.location.uri == "hf://Qwen/Qwen2.5-0.5B-Instruct"
    assert model.adapter and model.adapter.uri == "s3://models/support/ft_v1/adapter"
    both = private_model([], baseModel="Qwen2.5-0.5B-Instruct")
    both["status"]["versions"][0]["artifacts"] = {"adapter": "adapter", "model": "model"}
    model = resolve_eval_run(
        job, "t-1", "o-r1", CATALOG, {"PrivateModel/support-assistant": both}, SETTINGS
    ).config.model
    assert model and model.adapter is None and model.location
    assert model.location.uri == "s3://models/support/ft_v1", "the root, verified against its manifest"


def test_a_pipeline_run_resolves_to_the_version_it_published():
    job = evaljob("evaljob-standard.yaml", model={"pipelineRun": {"pipeline": "sft"}})
    pipeline = {
        "spec": {"output": {"privateModel": "support-assistant"}},
        "status": {
            "runs": [
                {"name": "ft_x_2", "phase": "Failed"},
                {"name": "ft_v1", "phase": "Succeeded", "outputVersion": "ft_v1"},
            ]
        },
    }
    objects = {
        "FineTunePipeline/sft": pipeline,
        "PrivateModel/support-assistant": private_model(["config.json"]),
    }
    run = resolve_eval_run(job, "t-1", "o-r1", CATALOG, objects, SETTINGS)
    assert run.private_model == ("support-assistant", "ft_v1")
    with pytest.raises(ResolveError, match="sft has no succeeded run with a published version"):
        resolve_eval_run(job, "t-1", "o-r1", CATALOG, {"FineTunePipeline/sft": {"status": {}}}, SETTINGS)


def test_the_job_is_a_restricted_gpu_job_owned_by_the_evaljob():
    job = evaljob(
        "evaljob-lm-eval.yaml",
        resources={"gpusPerNode": 2, "queueName": "team-a", "memory": "32Gi"},
        activeDeadlineSeconds=3600,
    )
    run = resolve_eval_run(job, "qwen_harness-1", "qwen-harness-r1-abc", CATALOG, {}, SETTINGS)
    built = build_eval_job(run, job, SETTINGS)
    assert built["metadata"]["name"] == "qwen-harness-r1-abc"
    assert built["metadata"]["labels"]["kaizen.dev/evaljob"] == "qwen-harness"
    assert built["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a" and built["spec"]["suspend"]
    [owner] = built["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("EvalJob", UID, True)
    spec = built["spec"]
    assert spec["activeDeadlineSeconds"] == 3600 and spec["ttlSecondsAfterFinished"] == 86400
    assert spec["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [EXIT_USER_ERROR]
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"]
    [container] = pod["containers"]
    assert container["args"] == ["eval", "--config", "/etc/kaizen/run.json"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["securityContext"]["readOnlyRootFilesystem"] and container["securityContext"][
        "capabilities"
    ] == {"drop": ["ALL"]}
    env = {e["name"]: e for e in container["env"]}
    assert env["KAIZEN_PROGRESS_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "qwen-harness-r1-abc-token"
    config = build_eval_config_map(run, job)
    assert json.loads(config["data"]["run.json"])["suite"] == "lm-eval-harness"
    assert build_eval_token_secret(run, job, "t0k")["stringData"] == {"token": "t0k"}


def test_an_endpoint_gets_its_key_from_the_secret_and_no_gpu():
    job = evaljob("evaljob-endpoint.yaml")
    run = resolve_eval_run(job, "e-1", "e-r1", CATALOG, {}, SETTINGS)
    [container] = build_eval_job(run, job, SETTINGS)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "OPENAI_API_KEY"
    assert "nvidia.com/gpu" not in json.dumps(container["resources"])
    assert (
        run.config.model
        and run.config.model.endpoint
        and run.config.model.endpoint.api_key_env == "OPENAI_API_KEY"
    )


def _spec(**changes: Any) -> EvalJobSpec:
    return EvalJobSpec.model_validate({**load_example("evaljob-lm-eval.yaml")["spec"], **changes})


def test_runs_start_on_creation_and_on_each_run_token():
    first = new_run(_spec(), [], NOW, {})
    assert first and first.run_name == "qwen_harness-1" and first.phase == "Pending"
    assert new_run(_spec(), [first], NOW, {}) is None  # active
    done = first.model_copy(update={"phase": "Succeeded"})
    assert new_run(_spec(), [done], NOW, {}) is None  # same (absent) token: no new run
    again = new_run(_spec(runToken="b"), [done], NOW, {})
    assert again and again.run_name == "qwen_harness-2" and again.run_token == "b"
    assert new_run(_spec(runToken="b"), [again], NOW, {}) is None
    assert run_object_name("qwen-harness", 2) != run_object_name("qwen-harness", 1)
    assert len(run_object_name("x" * 253, 10)) <= 52


def _pod(message: TerminationMessage, exit_code: int = 0) -> dict[str, Any]:
    state = {
        "terminated": {
            "exitCode": exit_code,
            "message": message.model_dump_json(by_alias=True, exclude_none=True),
        }
    }
    return {
        "status": {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "containerStatuses": [{"state": state}],
        }
    }


def _job(condition: str | None, reason: str = "") -> dict[str, Any]:
    conditions = [{"type": condition, "status": "True", "reason": reason}] if condition else []
    return {
        "metadata": {"name": "j"},
        "spec": {},
        "status": {"conditions": conditions, "active": 0 if condition else 1},
    }


RUN = EvalRunRecord(run_name="qwen_harness-1", phase="Pending", start_time=NOW)


def test_a_run_follows_its_job_and_reads_the_termination_message():
    assert advance_eval(RUN, EvalChildren(), now=NOW).actions == ("create_children",)
    assert advance_eval(RUN, EvalChildren(job=_job(None)), now=NOW).run.phase == "Running"
    term = TerminationMessage(
        phase="Succeeded", results={"rougeL": 0.41}, results_uri="s3://b/r", warnings=["w"]
    )
    step = advance_eval(RUN, EvalChildren(job=_job("Complete"), pods=[_pod(term)]), now=NOW)
    assert step.run.phase == "Succeeded" and step.run.results == {"rougeL": 0.41}
    assert step.run.results_uri == "s3://b/r" and step.warnings == ("w",) and step.run.completion_time == NOW
    failed = TerminationMessage(phase="Failed", reason="DataNotStaged", message="winogrande is not staged")
    step = advance_eval(
        RUN, EvalChildren(job=_job("Failed", "PodFailurePolicy"), pods=[_pod(failed, 2)]), now=NOW
    )
    assert (step.run.phase, step.run.reason, step.message) == (
        "Failed",
        "DataNotStaged",
        "winogrande is not staged",
    )
    deadline = advance_eval(RUN, EvalChildren(job=_job("Failed", "DeadlineExceeded")), now=NOW)
    assert deadline.run.reason == "DeadlineExceeded"


def test_cancel_by_annotation_deletes_the_job():
    obj = run_object_name("qwen-harness", 1)
    assert cancel_requested({"kaizen.dev/cancel": "true"}, RUN, obj)[0]
    assert cancel_requested({"kaizen.dev/cancel": "qwen_harness-1"}, RUN, obj)[0]
    assert cancel_requested({"kaizen.dev/cancel": f"other-3, {obj}"}, RUN, obj)[0]
    assert not cancel_requested({"kaizen.dev/cancel": "qwen_harness-7"}, RUN, obj)[0]
    step = advance_eval(RUN, EvalChildren(job=_job(None)), now=NOW, cancel=True)
    assert step.run.phase == "Cancelled" and step.actions == ("delete_children",)
    assert advance_eval(step.run, EvalChildren(), now=NOW).actions == ()  # finished runs are final


def test_results_are_merged_once_into_the_evaluated_version():
    from kaizen_api.privatemodel import VersionEvaluation

    entry = VersionEvaluation(eval_job="j", run_name="j-1", suite="standard", results={"rougeL": 0.4})
    versions = [{"name": "ft_v0"}, {"name": "ft_v1", "files": [{"name": "config.json"}]}]
    merged = merge_evaluation(versions, "ft_v1", entry)
    assert merged and merged[1]["evaluations"][0]["results"] == {"rougeL": 0.4} and merged[1]["files"]
    assert merge_evaluation(merged, "ft_v1", entry) is None  # recorded already
    assert merge_evaluation(versions, "ft_v9", entry) is None
    made_again = entry.model_copy(update={"eval_job_uid": "another-uid", "results": {"rougeL": 0.5}})
    again = merge_evaluation(merged, "ft_v1", made_again)  # a job of the same name numbers from 1 again
    assert again and [e["results"]["rougeL"] for e in again[1]["evaluations"]] == [0.4, 0.5]


def test_the_eleventh_evaluation_keeps_the_newest_ten_within_the_crd_s_bound():
    from kaizen_api.privatemodel import EVALUATIONS_MAX, PrivateModelStatus, VersionEvaluation

    versions: list[dict] = [{"index": 0, "name": "v1", "status": "ready", "ready": True}]
    for i in range(EVALUATIONS_MAX + 1):
        entry = VersionEvaluation(eval_job="e", run_name=f"e-{i}", suite="standard")
        versions = merge_evaluation(versions, "v1", entry) or versions
    runs = [e["runName"] for e in versions[0]["evaluations"]]
    assert runs == [f"e-{i}" for i in range(1, EVALUATIONS_MAX + 1)]
    PrivateModelStatus.model_validate({"versions": versions})  # what the API server accepts


def test_the_gate_evaljob_evaluates_the_new_version_and_decides_promotion():
    from kaizen_api.finetune import FineTunePipelineSpec
    from kaizen_api.finetune_status import RunStatus
    from kaizen_operator.eval_gate import build_gate_evaljob, gate_promotion

    pipeline = load_example("finetune-sft-gated.yaml")
    pipeline["metadata"].update(namespace="team-a", uid=UID)
    version = "ft_Qwen2.5-0.5B-Instruct_20261201220000"
    run = RunStatus(
        name=version, object_name="sft-gated-20261201220000-ab12cd", phase="Succeeded", output_version=version
    )
    evaljob = build_gate_evaljob(pipeline, run)
    spec = EvalJobSpec.model_validate(evaljob["spec"])  # a valid EvalJob
    assert spec.model and spec.model.private_model and spec.model.private_model.version == run.output_version
    assert spec.suite == "standard" and spec.metrics == ["rougeL", "bleu"]
    assert evaljob["metadata"]["name"] == "sft-gated-20261201220000-ab12cd-eval"
    assert evaljob["metadata"]["ownerReferences"][0]["kind"] == "FineTunePipeline"
    gate = FineTunePipelineSpec.model_validate(pipeline["spec"]).evaluation
    assert gate is not None
    assert gate_promotion(gate, {"status": {"phase": "Running"}}) is None
    passed = gate_promotion(
        gate, {"status": {"phase": "Succeeded", "results": {"rougeL": 0.45, "bleu": 0.3}}}
    )
    assert passed and passed.promoted
    failed = gate_promotion(gate, {"status": {"phase": "Succeeded", "results": {"rougeL": 0.3, "bleu": 0.3}}})
    assert failed and not failed.promoted and failed.message == "rougeL >= 0.4: got 0.3"
    broken = gate_promotion(gate, {"status": {"phase": "Failed", "runs": [{"reason": "DataNotStaged"}]}})
    assert broken and not broken.promoted and "DataNotStaged" in broken.message
