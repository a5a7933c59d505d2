"""A reachable cluster as Kaizen's tools see it: its kubeconfig, a JSON REST helper and CRD installs.

The local control plane (``controlplane.LocalControlPlane``) is one; ``KAIZEN_KUBECONFIG``'s cluster,
wrapped in ``Cluster``, is another.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import yaml

from kaizen_local.paths import (
    KAIZEN_CRDS_DIR,
    OWNED_SECRETS_POLICY_FILE,
    SHARING_POLICY_FILE,
    THIRD_PARTY_CRDS_DIR,
)

# kubernetes is imported where it is used: importing it takes seconds (thousands of pydantic models), and
# every pytest run loads the fixtures built on this module, unit tests included.
if TYPE_CHECKING:
    from kaizen_operator.kube import Kube
    from kubernetes import client

FIELD_MANAGER = "kaizen-local"
DEFAULT_SA_PATH = "/api/v1/namespaces/{}/serviceaccounts/default"
# Set on every CRD install_crds applies: a CRD whose hash matches is not applied again.
MANIFEST_HASH_ANNOTATION = "kaizen.dev/manifest-sha256"

T = TypeVar("T")


def kaizen_crd_files() -> list[Path]:
    return sorted(KAIZEN_CRDS_DIR.glob("*.yaml"))


def third_party_crd_files() -> list[Path]:
    return sorted(THIRD_PARTY_CRDS_DIR.rglob("*.yaml"))


def default_crd_files() -> list[Path]:
    """Every CRD a Kaizen cluster has: the third-party ones and Kaizen's own, whatever of them exists."""
    return third_party_crd_files() + kaizen_crd_files()


def load_crds(files: Iterable[Path]) -> list[dict[str, Any]]:
    """Parse the CRD documents of ``files`` (other kinds are ignored). The C loader matters: the
    third-party CRDs are 4 MB of YAML, which the pure-Python loader needs many seconds for."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crds = []
    for path in files:
        with path.open() as stream:
            docs = list(yaml.load_all(stream, Loader=loader))
        crds += [d for d in docs if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition"]
    return crds


def wait_for(condition: Callable[[], T], timeout: float = 30, interval: float = 0.1, what: str = "") -> T:
    """Poll ``condition`` until it returns something truthy, and return that; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what or condition}")
        time.sleep(interval)


def kubeconfig_yaml(server: str, ca_data: str, token: str) -> str:
    """A one-context kubeconfig; ``ca_data`` is base64 PEM as kubeconfigs store it."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "kaizen", "cluster": {"server": server, "certificate-authority-data": ca_data}}
            ],
            "users": [{"name": "kaizen", "user": {"token": token}}],
            "contexts": [{"name": "kaizen", "context": {"cluster": "kaizen", "user": "kaizen"}}],
            "current-context": "kaizen",
        },
        sort_keys=False,
    )


class CrdRef(NamedTuple):
    """What it takes to find a CRD's resource in discovery."""

    name: str
    group: str
    version: str  # the first served one
    plural: str

    @classmethod
    def of(cls, crd: dict[str, Any]) -> CrdRef:
        spec = crd["spec"]
        version = next(v["name"] for v in spec["versions"] if v["served"])
        return cls(crd["metadata"]["name"], spec["group"], version, spec["names"]["plural"])


class Cluster:
    """A reachable cluster, as tests see it: the kubeconfig plus client helpers."""

    def __init__(self, kubeconfig: Path, bin_dir: Path | None = None, log_dir: Path | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.bin_dir = bin_dir
        self.log_dir = log_dir
        self.crd_names: list[str] = []  # CRDs known to be Established (see wait_established)
        self._kube: Kube | None = None

    @property
    def env(self) -> dict[str, str]:
        """Environment for subprocesses (kopf, kubectl, helm) that should talk to this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def api_client(self) -> client.ApiClient:
        """A new client authenticated as cluster admin; close it (or use ``with``) when done."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def close(self) -> None:
        if self._kube is not None:
            self._kube.api.close()
            self._kube = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        missing_ok: bool = False,
    ) -> Any:
        """A REST call with plain JSON in and out, through the operator's own client (`Kube`): ApiError
        on an error status, except that with ``missing_ok`` a 404 returns None.

        One client is kept, so one pool of kept-alive connections: each new one costs a TLS handshake.
        """
        from kaizen_operator.kube import ApiError, Kube

        if self._kube is None:
            self._kube = Kube(self.api_client())
        try:
            return self._kube.request(method, path, body, query, content_type, accept)
        except ApiError as err:
            if missing_ok and err.status == 404:
                return None
            raise

    def exists(self, path: str) -> bool:
        return self.request("GET", path, missing_ok=True) is not None

    def install_crds(self, crds: list[dict[str, Any]], timeout: float = 60) -> None:
        """Server-side apply those of ``crds`` the cluster lacks or has in another version, and wait
        until each is Established. Applying is what costs: the apiserver spends seconds of CPU on each
        large CRD, even when nothing changes."""
        crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        # Metadata only: the full list would be megabytes of schema.
        listing = self.request(
            "GET", crd_path, accept="application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
        )
        installed = {
            item["metadata"]["name"]: (item["metadata"].get("annotations") or {}).get(
                MANIFEST_HASH_ANNOTATION
            )
            for item in listing["items"] or []
        }
        outdated = []
        for crd in crds:
            digest = hashlib.sha256(json.dumps(crd, sort_keys=True).encode()).hexdigest()
            if installed.get(crd["metadata"]["name"]) != digest:
                annotations = {**(crd["metadata"].get("annotations") or {}), MANIFEST_HASH_ANNOTATION: digest}
                outdated.append({**crd, "metadata": {**crd["metadata"], "annotations": annotations}})

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda crd: self.apply(f"{crd_path}/{crd['metadata']['name']}", crd), outdated))
        self.wait_established([CrdRef.of(crd) for crd in crds], timeout)

    def install_admission_policies(self) -> None:
        """Server-side apply Kaizen's ValidatingAdmissionPolicies (the chart's files, as they are) and for
        each a binding that denies what it refuses in every namespace, as the chart's templates do."""
        for path in (SHARING_POLICY_FILE, OWNED_SECRETS_POLICY_FILE):
            policy = yaml.safe_load(path.read_text())
            name = policy["metadata"]["name"]
            binding = {
                "apiVersion": policy["apiVersion"],
                "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": {"name": name},
                "spec": {"policyName": name, "validationActions": ["Deny"]},
            }
            base = f"/apis/{policy['apiVersion']}"
            self.apply(f"{base}/validatingadmissionpolicies/{name}", policy)
            self.apply(f"{base}/validatingadmissionpolicybindings/{name}", binding)

    def apply(self, path: str, manifest: dict[str, Any]) -> None:
        """Server-side apply `manifest` at `path`, as Kaizen's local field manager, taking its fields
        over from any other manager."""
        self.request(
            "PATCH",
            path,
            manifest,
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            content_type="application/apply-patch+yaml",
        )

    def wait_established(self, crds: list[CrdRef], timeout: float = 60) -> None:
        """Wait until the CRDs' resources are served, and record them in ``crd_names``."""

        def served(crd: CrdRef) -> bool:
            # Discovery lists a CRD's resource once it is Established. Polling it is cheap; polling the CRD
            # itself makes the apiserver encode megabytes of schema every time.
            discovery = self.request("GET", f"/apis/{crd.group}/{crd.version}", missing_ok=True)
            return discovery is not None and any(r["name"] == crd.plural for r in discovery["resources"])

        for crd in crds:
            wait_for(partial(served, crd), timeout, interval=0.2, what=f"CRD {crd.name} Established")
            if crd.name not in self.crd_names:
                self.crd_names.append(crd.name)

    def kubeconfig_for_service_account(self, namespace: str, name: str, path: Path) -> Path:
        """Write a kubeconfig at ``path`` that authenticates as ServiceAccount ``namespace/name`` with a
        bound token, for tests of the operator's real RBAC."""
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        }
        token = self.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", request)
        admin = yaml.safe_load(self.kubeconfig.read_text())
        current = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
        cluster = next(c for c in admin["clusters"] if c["name"] == current["context"]["cluster"])["cluster"]
        ca_data = (
            cluster.get("certificate-authority-data")
            or base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
        )
        path.write_text(kubeconfig_yaml(cluster["server"], ca_data, token["status"]["token"]))
        return path
