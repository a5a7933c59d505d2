"""The real API server admits every example and rejects every invalid case with a message that names
the field; immutable fields cannot change after creation."""

from __future__ import annotations

import pytest
from api.cases import ALLOWED_UPDATES, CASES, TRANSITIONS, VALID_VARIANTS
from api.manifests import all_examples, load_example
from kaizen_api.base import GROUP, VERSION
from kaizen_api.kinds import KINDS
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.cluster
PLURALS = {k.kind: k.plural for k in KINDS}


def create(api: client.ApiClient, namespace: str, manifest: dict) -> dict:
    """Create through the API server with strict field validation (unknown fields are errors)."""
    if manifest["kind"] == "Secret":
        return client.CoreV1Api(api).create_namespaced_secret(namespace, manifest, field_validation="Strict")
    return client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURALS[manifest["kind"]], manifest, field_validation="Strict"
    )


def replace(api: client.ApiClient, namespace: str, manifest: dict) -> dict:
    objects = client.CustomObjectsApi(api)
    plural = PLURALS[manifest["kind"]]
    name = manifest["metadata"]["name"]
    current = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    manifest = {
        **manifest,
        "metadata": {**manifest["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]},
    }
    return objects.replace_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name, manifest, field_validation="Strict"
    )


def rejection(call) -> str:
    with pytest.raises(ApiException) as info:
        call()
    assert info.value.status in (400, 422), info.value.body
    return info.value.body


@pytest.mark.parametrize("name,manifest", all_examples(), ids=lambda v: v if isinstance(v, str) else "")
def test_example_is_accepted(control_plane, namespace: str, name: str, manifest: dict) -> None:
    created = create(control_plane.api_client(), namespace, manifest)
    if manifest["kind"] == "FineTunePipeline":
        # Defaults come from the CRD schema, so a GitOps tool never sees the operator write spec.
        assert created["spec"]["hyperparameters"]["gradientAccumulationSteps"] == (
            manifest["spec"].get("hyperparameters", {}).get("gradientAccumulationSteps", 4)
        )
        assert created["spec"]["extendedHyperparameters"]["lora"]["loraRank"] >= 1


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_invalid_manifest_is_rejected(control_plane, namespace: str, case) -> None:
    body = rejection(lambda: create(control_plane.api_client(), namespace, case.manifest()))
    assert case.field in body, f"{case.id}: rejection does not name {case.field}: {body}"
    assert "evaluating rule" not in body, f"{case.id}: a CEL rule failed at run time: {body}"


@pytest.mark.parametrize("case", VALID_VARIANTS, ids=lambda c: c.id)
def test_valid_variant_is_accepted(control_plane, namespace: str, case) -> None:
    manifest = case.manifest()
    manifest["metadata"] = {**manifest["metadata"], "name": f"{manifest['metadata']['name']}-{case.id}"}
    create(control_plane.api_client(), namespace, manifest)


@pytest.mark.parametrize("case", TRANSITIONS, ids=lambda c: c.id)
def test_immutable_field_cannot_change(control_plane, namespace: str, case) -> None:
    api = control_plane.api_client()
    create(api, namespace, load_example(case.example))
    body = rejection(lambda: replace(api, namespace, case.manifest()))
    assert case.field in body and "immutable" in body, body


@pytest.mark.parametrize("case", ALLOWED_UPDATES, ids=lambda c: c.id)
def test_mutable_field_can_change(control_plane, namespace: str, case) -> None:
    api = control_plane.api_client()
    create(api, namespace, load_example(case.example))
    replace(api, namespace, case.manifest())
