"""A small synchronous Kubernetes REST client: plain JSON in and out, no model classes.

The typed methods of the `kubernetes` package build and validate a model object for every response,
which costs CPU and memory the operator does not need; this calls the same authenticated ApiClient
with paths. Handlers run it in worker threads.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from kubernetes import client, config

# apiVersion/kind -> (path prefix, plural) for every kind the operator touches.
RESOURCES: dict[str, tuple[str, str]] = {
    "v1/ConfigMap": ("/api/v1", "configmaps"),
    "v1/Secret": ("/api/v1", "secrets"),
    "v1/Service": ("/api/v1", "services"),
    "v1/Pod": ("/api/v1", "pods"),
    "v1/Event": ("/api/v1", "events"),
    "batch/v1/Job": ("/apis/batch/v1", "jobs"),
    "batch/v1/CronJob": ("/apis/batch/v1", "cronjobs"),
    "kubeflow.org/v1/PyTorchJob": ("/apis/kubeflow.org/v1", "pytorchjobs"),
    "kaizen.dev/v1alpha1/FineTunePipeline": ("/apis/kaizen.dev/v1alpha1", "finetunepipelines"),
    "kaizen.dev/v1alpha1/PrivateModel": ("/apis/kaizen.dev/v1alpha1", "privatemodels"),
    "kaizen.dev/v1alpha1/EvalJob": ("/apis/kaizen.dev/v1alpha1", "evaljobs"),
}
DISCOVERY_TTL_S = 5.0
CREDENTIALS_REFRESH_S = 5.0
RefreshHook = Callable[[client.Configuration], None]
METADATA_LIST = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"


class ApiError(Exception):
    """A non-2xx answer; `reason` is the Status reason (AlreadyExists, Conflict, Forbidden, …)."""

    def __init__(self, status: int, body: str) -> None:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = {}
        self.status = status
        self.reason = str(parsed.get("reason") or status)
        self.message = str(parsed.get("message") or body[:500])
        super().__init__(f"{status} {self.reason}: {self.message}")


def load_api_client(connections: int = 20) -> client.ApiClient:
    """In-cluster credentials when in a pod, else the kubeconfig ($KUBECONFIG or ~/.kube/config);
    `connections` kept-alive connections, one per concurrent reconcile."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = connections
    throttle_refresh(configuration)
    return client.ApiClient(configuration)


def throttle_refresh(
    configuration: client.Configuration,
    every_s: float = CREDENTIALS_REFRESH_S,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Run the credential loaders' refresh hook at most once per `every_s`, not before every request.

    The client calls the hook before each request, and both loaders' hooks then apply the whole
    configuration again; setting its host scans the environment for proxy variables. That was a
    third of a millisecond of CPU per request, on the way to every workload the operator creates.
    The hooks only reload a token that is about to expire (in a pod, the file is re-read every
    minute; from a kubeconfig, five minutes before the expiry), so a few seconds later is as good."""
    # The client annotates the attribute as None; the loaders set a function there.
    first: RefreshHook | None = getattr(configuration, "refresh_api_key_hook", None)
    if first is None:
        return
    hook: RefreshHook = first
    due = -math.inf

    def refresh(current: client.Configuration) -> None:
        nonlocal due, hook
        now = clock()
        if now >= due:  # two threads at once may both refresh: harmless
            due = now + every_s
            hook(current)
            # Both loaders' hooks install a fresh closure of themselves: keep that one, behind this.
            installed: RefreshHook | None = getattr(current, "refresh_api_key_hook", None)
            if installed is not None and installed is not refresh:
                hook = installed
                current.refresh_api_key_hook = refresh  # type: ignore[assignment]

    configuration.refresh_api_key_hook = refresh  # type: ignore[assignment]


def path_segment(text: str) -> str:
    """`text` as one segment of a URL path: a name that came from outside (a request's path) must not
    add segments, a query or a `..` that the HTTP client resolves, whatever its caller checked."""
    if text in (".", ".."):
        raise ValueError(f"{text!r} cannot name an object")
    return quote(text, safe="")


def path_of(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    prefix, plural = RESOURCES[f"{api_version}/{kind}"]
    base = f"{prefix}/namespaces/{path_segment(namespace)}/{plural}" if namespace else f"{prefix}/{plural}"
    return f"{base}/{path_segment(name)}" if name else base


def path_for(manifest: dict[str, Any], *, named: bool = False) -> str:
    meta = manifest["metadata"]
    return path_of(
        manifest["apiVersion"], manifest["kind"], meta.get("namespace"), meta["name"] if named else None
    )


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self._discovery: dict[str, tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        *,
        answer: bool = True,
    ) -> Any:
        """The parsed answer, or None without `answer` (parsing the echo of every created object, which
        no caller reads, was a few per cent of the operator's CPU)."""
        headers = {"Content-Type": content_type, "Accept": accept}
        method, url, headers, body, _ = self.api.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(method, url, headers, body, _request_timeout=30)
        data = response.read()
        if not 200 <= response.status < 300:
            raise ApiError(response.status, data.decode(errors="replace"))
        return json.loads(data) if data and answer else None

    def get(self, path: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", path)  # type: ignore[no-any-return]
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def list(
        self, path: str, selector: str | None = None, *, metadata_only: bool = False
    ) -> list[dict[str, Any]]:
        """Items of a collection; with `metadata_only`, just their metadata (no spec or status sent)."""
        accept = METADATA_LIST if metadata_only else "application/json"
        answer = self.request(
            "GET", path, query={"labelSelector": selector} if selector else None, accept=accept
        )
        return list(answer.get("items") or [])

    def create(self, manifest: dict[str, Any]) -> bool:
        """Create-if-absent: True when created, False when it already existed (deterministic names)."""
        try:
            self.request("POST", path_for(manifest), manifest, answer=False)
        except ApiError as err:
            if err.status == 409 and err.reason == "AlreadyExists":
                return False
            if err.status == 404:  # the kind is not served (a CRD was removed): look again next time
                with self._lock:
                    self._discovery.clear()
            raise
        return True

    def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")  # type: ignore[no-any-return]

    def delete(self, path: str, *, uid: str | None = None) -> bool:
        """True when deleted; with `uid`, only the object of that uid (a 409: it was replaced)."""
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid is not None:
            body["preconditions"] = {"uid": uid}
        try:
            self.request("DELETE", path, body)
        except ApiError as err:
            if err.status == 404 or (err.status == 409 and uid is not None):
                return False
            raise
        return True

    def serves(self, group_version: str, plural: str) -> bool:
        """Whether the cluster serves a resource (e.g. a CRD is installed), cached for a while."""
        key = f"{group_version}/{plural}"
        with self._lock:
            cached = self._discovery.get(key)
        if cached and time.monotonic() - cached[0] < DISCOVERY_TTL_S:
            return cached[1]
        found = self.get(f"/apis/{group_version}")
        served = bool(found) and any(r.get("name") == plural for r in (found or {}).get("resources") or [])
        with self._lock:
            self._discovery[key] = (time.monotonic(), served)
        return served


def kubeconfig_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """In-cluster credentials in a pod unless a kubeconfig or context is named, else that kubeconfig
    (default: the first file of $KUBECONFIG, else ~/.kube/config); for tools run on a workstation."""
    configuration = client.Configuration()
    if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
        config.load_kube_config(config_file=path, context=context, client_configuration=configuration)
    return client.ApiClient(configuration)
