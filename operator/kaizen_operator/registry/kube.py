"""Plain-JSON calls to the Kubernetes API for the registry (the operator's handlers and
`kaizen-runner model upload --to pm/NAME` on a workstation).

The typed methods of the kubernetes client build a model object per resource, which costs more CPU
than the call; the registry only needs dicts in and out.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from kaizen_api.base import GROUP, VERSION

_lock = threading.Lock()
_default: Kube | None = None


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Kube:
    """One kubernetes ApiClient (its connection pool) and JSON requests through it."""

    def __init__(self, api: Any) -> None:
        self.api = api

    @classmethod
    def from_config(cls, kubeconfig: str | None = None, context: str | None = None) -> Kube:
        """In-cluster credentials when running in a pod, else the kubeconfig ($KUBECONFIG, ~/.kube/config)."""
        from kubernetes import client, config

        configuration = client.Configuration()
        if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
            config.load_kube_config(config_file=path, context=context, client_configuration=configuration)
        return cls(client.ApiClient(configuration))

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        missing_ok: bool = False,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """The response as JSON; KubeError on an error status (None for a 404 with missing_ok)."""
        all_headers = {"Content-Type": content_type, "Accept": "application/json", **(headers or {})}
        method, url, all_headers, body, _ = self.api.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params=all_headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(method, url, all_headers, body)
        data = response.read()
        if response.status == 404 and missing_ok:
            return None
        if not 200 <= response.status < 300:
            try:
                message = json.loads(data).get("message", "")
            except ValueError:
                message = data.decode(errors="replace")
            raise KubeError(response.status, message)
        return json.loads(data) if data else None

    def custom_objects(self, namespace: str, plural: str) -> list[dict[str, Any]]:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"
        return list((self.request("GET", path, missing_ok=True) or {}).get("items") or [])

    def custom_object(self, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}"
        result = self.request("GET", path, missing_ok=True)
        return dict(result) if result is not None else None

    def secret(self, namespace: str, name: str) -> dict[str, Any]:
        """A connection Secret; StorageError (the storage cannot be reached) when it cannot be read."""
        from kaizen_runner.storage import StorageError

        try:
            found = self.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}", missing_ok=True)
        except KubeError as err:
            raise StorageError(
                f"cannot read connection Secret {namespace}/{name}: {err}", cause="access_denied"
            ) from None
        if found is None:
            raise StorageError(f"connection Secret {namespace}/{name} does not exist", cause="bad_config")
        return dict(found)


def default_kube() -> Kube:
    """The process's client, made on first use (the operator's handlers share it across threads)."""
    global _default
    with _lock:
        if _default is None:
            _default = Kube.from_config()
        return _default
