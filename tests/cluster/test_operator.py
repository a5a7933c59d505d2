"""The operator, run in-process against the real API server, admits each kind: it sets the Accepted
and summary conditions and observedGeneration within seconds, and never touches spec.

A FineTunePipeline is reconciled at once rather than left Pending: alone in its namespace, the
example's output PrivateModel does not exist, so Ready is False and names that cause."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from api.manifests import load_example
from kaizen_api.base import GROUP, VERSION
from kaizen_api.kinds import EVAL_JOB, FINETUNE_PIPELINE, PRIVATE_MODEL
from kopf.testing import KopfRunner
from kubernetes import client
from kubernetes.config import kube_config

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def operator(control_plane) -> Iterator[KopfRunner]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KUBECONFIG", str(control_plane.kubeconfig))
        # kopf logs in through the kubernetes client, which read $KUBECONFIG when it was imported.
        env.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(control_plane.kubeconfig))
        with KopfRunner(
            ["run", "--all-namespaces", "--standalone", "-m", "kaizen_operator.handlers"]
        ) as runner:
            yield runner
    assert runner.exception is None, runner.output


def wait_for_status(
    api: client.ApiClient, namespace: str, plural: str, name: str, timeout: float = 20
) -> dict:
    objects = client.CustomObjectsApi(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        if obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"]:
            return obj
        time.sleep(0.2)
    raise AssertionError(f"{plural}/{name} got no status within {timeout}s: {obj.get('status')}")


@pytest.mark.parametrize(
    "kind,example,summary,summary_status",
    [
        (FINETUNE_PIPELINE, "finetune-sft-alpaca.yaml", "Ready", ("False", "OutputModelNotFound")),
        (EVAL_JOB, "evaljob-lm-eval.yaml", "Succeeded", ("Unknown", None)),
        (PRIVATE_MODEL, "privatemodel.yaml", "Ready", ("Unknown", None)),
    ],
    ids=lambda v: getattr(v, "kind", None),
)
def test_operator_sets_initial_conditions(
    operator, control_plane, namespace, kind, example, summary, summary_status
) -> None:
    api = control_plane.api_client()
    manifest = load_example(example)
    created = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, kind.plural, manifest
    )
    started = time.monotonic()
    obj = wait_for_status(api, namespace, kind.plural, manifest["metadata"]["name"])
    assert time.monotonic() - started < 20
    conditions = {c["type"]: c for c in obj["status"]["conditions"]}
    assert conditions["Accepted"]["status"] == "True"
    status, reason = summary_status
    assert conditions[summary]["status"] == status
    assert reason is None or conditions[summary]["reason"] == reason
    assert all(c["observedGeneration"] == obj["metadata"]["generation"] for c in conditions.values())
    assert obj["spec"] == created["spec"], "the operator must never write spec"
