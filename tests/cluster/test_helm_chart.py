"""The Helm chart (charts/kaizen) on the real API server.

`helm lint` and `helm template` pass and render settings the operator accepts; `helm install` into a
namespace under the restricted Pod Security profile creates every object, the operator's pod included.
Then the operator runs (as a subprocess) with the token of the chart's ServiceAccount and the chart's
settings file, and nothing else: a gated FineTunePipeline goes through preflight, training, its gate
EvalJob and promotion, a multi-node run on PyTorchJob is cancelled, a scheduled pipeline's CronJob fires,
a PrivateModel's shares become Roles and RoleBindings and the model is deleted. None of it may meet a
403, and SubjectAccessReviews show what the account cannot do. The release's admission policy lets the
account write only the Secrets the operator owns.
"""

from __future__ import annotations

import json
import tomllib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import (
    RBAC,
    as_user,
    can,
    drive,
    forbidden_shown,
    may,
    operator_as,
    token_secrets,
    user_secret,
)
from ftp_support import (
    MODELS,
    PIPELINES,
    first_run_phase,
    pipeline,
    private_model,
    restrict,
    wait_pipeline,
)
from kaizen_api.base import GROUP
from kaizen_local.cluster import wait_for
from kaizen_local.paths import OWNED_SECRETS_POLICY_FILE, REPO_ROOT
from kaizen_operator.catalog import load_catalog
from kaizen_operator.handlers.finetune import KEY_ENV, KEY_SECRET, NAMESPACE_ENV, progress_key
from kaizen_operator.kube import ApiError, Kube
from kaizen_operator.settings import load_settings
from support.helm import CHART

pytestmark = pytest.mark.cluster
MIRROR = {"pvc": {"claimName": "m", "path": "llama"}}
SHARE_REFUSED = "changing who it is shared with needs verb share"


def rendered(helm: Any, *sets: str) -> list[dict[str, Any]]:
    out = helm("template", "kz", str(CHART), "--namespace", "kaizen-system", "--include-crds", *sets)
    return [doc for doc in yaml.safe_load_all(out) if doc]


def one(docs: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    return found


def owned_secrets_policy(docs: list[dict[str, Any]]) -> dict[str, Any]:
    policy = one(docs, "ValidatingAdmissionPolicy", "-owned-secrets")
    assert policy["metadata"]["name"] == "kz-operator-owned-secrets"
    return dict(policy["spec"])


def owned_secrets_spec(user: str) -> dict[str, Any]:
    """The spec of files/owned-secrets.yaml, its one match condition naming `user`."""
    spec = yaml.safe_load(OWNED_SECRETS_POLICY_FILE.read_text())["spec"]
    (condition,) = spec["matchConditions"]
    assert condition["expression"] == (
        "request.userInfo.username == 'system:serviceaccount:kaizen-system:kaizen-operator'"
    ), "the local cluster's account: `helm install kaizen -n kaizen-system`"
    return {
        **spec,
        "matchConditions": [{**condition, "expression": f"request.userInfo.username == '{user}'"}],
    }


def test_chart_lints_and_renders_settings_the_operator_accepts(helm: Any, tmp_path: Path) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"], "Chart.yaml's appVersion follows pyproject.toml"
    variant = [
        "--set", "watchNamespaces={team-a,team-b}", "--set", "quotas.maxPipelines=20",
        "--set", "settings.backoff_limit=3", "--set", "settings.pods.preflight_memory=8Gi",
        "--set-json", f"catalog.models={json.dumps([{'name': 'Llama-3.1-8B', 'mirror': MIRROR}])}",
        "--set-json", 'modelVolumes=[{"claimName":"m"}]',
        "--set", "apiServer.host=10.1.2.3", "--set", "apiServer.port=6443",
        "--set", "userRoles.aggregate=false",
    ]  # fmt: skip
    helm("lint", "--strict", str(CHART))
    helm("lint", "--strict", str(CHART), *variant)

    docs = rendered(helm)
    crds = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition")
    assert crds == [f"{p}.{GROUP}" for p in ("evaljobs", "finetunepipelines", "privatemodels")]
    data = one(docs, "ConfigMap")["data"]
    (tmp_path / "config.yaml").write_text(data["config.yaml"])
    settings = load_settings({"KAIZEN_OPERATOR_CONFIG": str(tmp_path / "config.yaml")})
    assert settings.progress_url == "http://kz-operator.kaizen-system.svc:8081"
    assert settings.runner_image == f"ghcr.io/kaizen-dev/kaizen-runner:{project['version']}"
    assert "catalog.yaml" not in data and settings.catalog_path is None
    assert {b["kind"] for b in docs if b["kind"].endswith("RoleBinding")} == {"ClusterRoleBinding"}
    # The sharing policy is the file the local cluster installs, under the release's name, bound to deny.
    policy = one(docs, "ValidatingAdmissionPolicy", "-privatemodel-sharing")
    shipped = yaml.safe_load((CHART / "files" / "privatemodel-sharing.yaml").read_text())
    assert (
        policy["spec"] == shipped["spec"] and policy["metadata"]["name"] == "kz-operator-privatemodel-sharing"
    )
    binding = one(docs, "ValidatingAdmissionPolicyBinding", "-privatemodel-sharing")["spec"]
    assert binding == {"policyName": "kz-operator-privatemodel-sharing", "validationActions": ["Deny"]}
    # The owned-Secrets policy too, matching the release's ServiceAccount instead of the file's.
    assert owned_secrets_policy(docs) == owned_secrets_spec("system:serviceaccount:kaizen-system:kz-operator")
    binding = one(docs, "ValidatingAdmissionPolicyBinding", "-owned-secrets")["spec"]
    assert binding == {"policyName": "kz-operator-owned-secrets", "validationActions": ["Deny"]}
    named = rendered(helm, "--set", "serviceAccount.name=robot")
    assert owned_secrets_policy(named) == owned_secrets_spec("system:serviceaccount:kaizen-system:robot")
    for level in ("view", "edit", "admin"):
        labels = one(docs, "ClusterRole", f"-operator-{level}")["metadata"]["labels"]
        assert labels[f"rbac.authorization.k8s.io/aggregate-to-{level}"] == "true"
    names = {e["name"] for e in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert not names & {"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"}, "the kubelet's, by default"

    docs = rendered(helm, *variant)
    data = one(docs, "ConfigMap")["data"]
    (tmp_path / "config.yaml").write_text(data["config.yaml"])
    settings = load_settings({"KAIZEN_OPERATOR_CONFIG": str(tmp_path / "config.yaml")})
    assert (settings.backoff_limit, settings.pods.preflight_memory, settings.quotas.max_pipelines) == (
        3,
        "8Gi",
        20,
    )
    assert settings.catalog_path is not None
    (tmp_path / settings.catalog_path.name).write_text(data["catalog.yaml"])
    catalog = load_catalog(tmp_path / settings.catalog_path.name)
    assert catalog.get("Llama-3.1-8B").mirror is not None  # merged over the shipped entry
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["--namespace=team-a", "--namespace=team-b"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"]) == ("10.1.2.3", "6443")
    labels = one(docs, "ClusterRole", "-operator-edit")["metadata"]["labels"]
    assert not any(key.startswith("rbac.authorization.k8s.io/") for key in labels), "not aggregated"
    bindings = [d for d in docs if d["kind"] == "RoleBinding" and d["roleRef"]["kind"] == "ClusterRole"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]


@pytest.fixture(scope="module")
def install(helm: Any, control_plane: Any) -> Iterator[Callable[..., dict[str, str]]]:
    """`install(*helm_args)`: the chart as release kz-<id>, in a new namespace under the restricted
    profile; every release is uninstalled at the end."""
    releases: list[tuple[str, str]] = []

    def run(*args: str) -> dict[str, str]:
        name = f"kz-{uuid.uuid4().hex[:6]}"
        namespace = f"{name}-system"
        labels = {"pod-security.kubernetes.io/enforce": "restricted", "kaizen.dev/test": "true"}
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": labels}}
        control_plane.request("POST", "/api/v1/namespaces", body)
        releases.append((name, namespace))
        helm("install", name, str(CHART), "-n", namespace, *args, kubeconfig=control_plane.kubeconfig)
        return {"name": name, "namespace": namespace, "account": f"{name}-operator"}

    yield run
    for name, namespace in releases:
        helm("uninstall", name, "-n", namespace, kubeconfig=control_plane.kubeconfig)
        query = {"propagationPolicy": "Background"}
        control_plane.request("DELETE", f"/api/v1/namespaces/{namespace}", query=query)


@pytest.fixture(scope="module")
def release(install: Callable[..., dict[str, str]]) -> dict[str, str]:
    """The chart with its default values: the operator watches every namespace."""
    return install()


def test_helm_install_is_accepted_and_its_pod_admitted_as_restricted(
    helm: Any, control_plane: Any, release: dict[str, str]
) -> None:
    ns, full = release["namespace"], release["account"]
    for path in (
        f"/api/v1/namespaces/{ns}/serviceaccounts/{full}",
        f"/api/v1/namespaces/{ns}/configmaps/{full}",
        f"/api/v1/namespaces/{ns}/services/{full}",
        f"/apis/apps/v1/namespaces/{ns}/deployments/{full}",
        f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{full}",
        f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{full}-discovery",
    ):
        assert control_plane.exists(path), path
    # The chart's CRDs (crds/, which Helm skips when they exist) as the API server would take them.
    for crd in rendered(helm, "--include-crds"):
        if crd["kind"] == "CustomResourceDefinition":
            control_plane.request(
                "PATCH",
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}",
                crd,
                query={"fieldManager": "kaizen-chart-test", "dryRun": "All", "force": "true"},
                content_type="application/apply-patch+yaml",
            )
    # The ReplicaSet's pod exists only if Pod Security admission took its template as restricted.
    selector = f"app.kubernetes.io/instance={release['name']}"
    wait_for(
        lambda: control_plane.request(
            "GET", f"/api/v1/namespaces/{ns}/pods", query={"labelSelector": selector}
        )["items"],
        timeout=60,
        what="the operator's pod, admitted under the restricted profile",
    )


def test_operator_works_under_the_chart_rbac_alone(
    control_plane: Any, release: dict[str, str], namespace: str, tmp_path: Path
) -> None:
    ns, cp = namespace, control_plane
    restrict(cp, ns)
    cp.request("POST", MODELS.format(ns), private_model())
    with operator_as(cp, release, tmp_path):
        drive(cp, ns)
    # Some refusals are not logged but shown: on a condition, or in an Event.
    assert not forbidden_shown(cp, ns)

    allowed = lambda *a, **k: can(cp, release, *a, **k)  # noqa: E731
    assert allowed("create", "secrets", ns) and allowed(
        "create", "roles", ns, group="rbac.authorization.k8s.io"
    )
    # Never needed, never granted (a ClusterRole holds in every namespace: `create secrets` does too).
    assert not allowed("list", "secrets", ns) and not allowed("watch", "secrets", "kube-system")
    assert not allowed("update", "secrets", ns) and not allowed("get", "pods", ns, subresource="log")
    assert not allowed("create", "pods", ns) and not allowed("create", "pods", ns, subresource="exec")
    assert not allowed("delete", "namespaces") and not allowed("list", "namespaces")
    assert not allowed("update", "configmaps", ns) and not allowed("list", "configmaps", ns)
    assert not allowed("update", "jobs", ns, group="batch") and not allowed(
        "list", "cronjobs", ns, group="batch"
    )
    assert not allowed("create", "customresourcedefinitions", group="apiextensions.k8s.io")
    for verb in ("escalate", "bind"):
        assert not allowed(verb, "roles", ns, group="rbac.authorization.k8s.io")
    assert not allowed("create", "clusterrolebindings", group="rbac.authorization.k8s.io")
    assert not allowed("patch", "finetunepipelines", ns, group=GROUP), "the operator never writes spec"


def test_the_chart_account_writes_only_the_secrets_it_owns(
    control_plane: Any, release: dict[str, str], namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The release's own policy on its account, under the chart's RBAC alone (create and delete on any
    Secret): its token Secrets and its progress key, no Secret of a user's
    (tests/cluster/test_owned_secrets.py goes through every refusal)."""
    cp, ns, own = control_plane, namespace, release["namespace"]
    cp.request("POST", f"/api/v1/namespaces/{ns}/secrets", user_secret("s3-credentials"))
    theirs = f"/api/v1/namespaces/{ns}/secrets/s3-credentials"
    key = f"/api/v1/namespaces/{own}/secrets/{KEY_SECRET}"
    cp.request("DELETE", key, missing_ok=True)  # the operator's run in another test may have made it

    def refused(kube: Kube) -> str:
        try:  # a dry run: before the API server has loaded the policy, this would delete the Secret
            kube.request("DELETE", theirs, query={"dryRun": "All"})
        except ApiError as err:
            return err.message if err.status == 403 else ""
        return ""

    with as_user(cp, f"system:serviceaccount:{own}:{release['account']}") as operator:
        message = wait_for(lambda: refused(operator), 30, what="the chart's policy refusing a user's Secret")
        assert f"'{release['account']}-owned-secrets'" in message and "only the Secrets it owns" in message
        for body in token_secrets(ns):
            operator.request("POST", f"/api/v1/namespaces/{ns}/secrets", body)
            operator.request("DELETE", f"/api/v1/namespaces/{ns}/secrets/{body['metadata']['name']}")
        monkeypatch.delenv(KEY_ENV, raising=False)
        monkeypatch.setenv(NAMESPACE_ENV, own)
        progress_key(operator)  # the operator's own code makes its key
    assert cp.exists(key) and cp.exists(theirs)


def test_watching_named_namespaces_confines_the_operator_to_them(
    control_plane: Any, install: Callable[..., dict[str, str]], namespace: str, tmp_path: Path
) -> None:
    """watchNamespaces: RoleBindings in those namespaces, nothing in others but the cluster-wide reads."""
    ns, cp = namespace, control_plane
    release = install("--set", f"watchNamespaces={{{ns}}}")
    restrict(cp, ns)
    cp.request("POST", MODELS.format(ns), private_model())
    with operator_as(cp, release, tmp_path, f"--namespace={ns}"):
        cp.request("POST", PIPELINES.format(ns), pipeline("one"))
        wait_pipeline(cp, ns, "one", first_run_phase("Succeeded"), 120)
        model = private_model("shared")
        model["spec"]["sharing"] = [{"email": "ana@example.com", "tenant": "t", "role": "owner"}]
        cp.request("POST", MODELS.format(ns), model)
        path = f"{MODELS.format(ns)}/shared"
        wait_for(lambda: (cp.request("GET", path).get("status") or {}).get("shares"), 60, what="a share")
    assert not forbidden_shown(cp, ns)

    allowed = lambda *a, **k: can(cp, release, *a, **k)  # noqa: E731
    assert allowed("create", "secrets", ns) and allowed("create", "jobs", ns, group="batch")
    assert allowed("list", "namespaces"), "kopf follows the namespaces it watches"
    for other in ("kube-system", "default"):
        assert not allowed("create", "secrets", other) and not allowed("get", "secrets", other)
        assert not allowed("create", "jobs", other, group="batch")
    own = release["namespace"]
    assert allowed("get", "secrets", own, name="kaizen-progress-key")
    assert not allowed("get", "secrets", own, name="another") and not allowed("delete", "secrets", own)


def test_namespace_members_use_kaizen_through_the_builtin_roles(
    control_plane: Any, release: dict[str, str], namespace: str
) -> None:
    """The chart's user roles join the built-in view, edit and admin ClusterRoles, so a namespace's
    usual RoleBindings cover Kaizen's kinds; only admin may set or change whom a PrivateModel is
    shared with."""
    cp, ns = control_plane, namespace
    users = {role: f"{release['name']}-{role}@example.com" for role in ("view", "edit", "admin")}
    for role, user in users.items():
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"team-{role}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }
        cp.request("POST", RBAC.format(ns, "rolebindings"), binding)
    ana = {"email": "ana@example.com", "tenant": "t", "role": "viewer"}
    model = f"{MODELS.format(ns)}/model"
    merge = "application/merge-patch+json"

    with as_user(cp, users["edit"]) as editor:
        # kube-controller-manager's aggregation controller copies the chart's rules into `edit`.
        wait_for(lambda: may(editor, "create", "privatemodels", ns), 30, what="edit covering Kaizen")
        editor.request("POST", PIPELINES.format(ns), pipeline("mine"))
        editor.request("POST", MODELS.format(ns), private_model("model"))
        editor.request("PATCH", model, {"spec": {"title": "Renamed"}}, content_type=merge)
        with pytest.raises(ApiError) as refused:
            editor.request("PATCH", model, {"spec": {"sharing": [ana]}}, content_type=merge)
        assert SHARE_REFUSED in str(refused.value)
        shared = private_model("shared")
        shared["spec"]["sharing"] = [ana]
        with pytest.raises(ApiError) as refused:  # nor by deleting the model and creating it again
            editor.request("POST", MODELS.format(ns), shared)
        assert SHARE_REFUSED in str(refused.value)
        assert not may(editor, "patch", "finetunepipelines/status", ns), "status is the operator's"

    with as_user(cp, users["view"]) as viewer:
        wait_for(lambda: may(viewer, "list", "privatemodels", ns), 30, what="view covering Kaizen")
        assert viewer.request("GET", f"{PIPELINES.format(ns)}/mine")["metadata"]["name"] == "mine"
        assert viewer.request("GET", model)["spec"]["title"] == "Renamed"
        with pytest.raises(ApiError) as refused:
            viewer.request("POST", PIPELINES.format(ns), pipeline("theirs"))
        assert refused.value.status == 403
        assert not may(viewer, "delete", "privatemodels", ns)

    with as_user(cp, users["admin"]) as admin:
        wait_for(lambda: may(admin, "share", "privatemodels", ns), 30, what="admin covering Kaizen")
        admin.request("PATCH", model, {"spec": {"sharing": [ana]}}, content_type=merge)
        admin.request("POST", MODELS.format(ns), shared)
    assert cp.request("GET", model)["spec"]["sharing"] == [ana]
