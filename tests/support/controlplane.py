"""pytest fixtures for the local cluster (the product module ``kaizen_local``, which the demo uses too).

``control_plane`` (session) is ``KAIZEN_KUBECONFIG``'s cluster when set, else a ``LocalControlPlane``
started for the session; ``namespace`` (function) is a fresh namespace for one test. Without the
binaries the cluster tests are skipped, or fail when ``KAIZEN_REQUIRE_CLUSTER=1`` (CI).

Every name tests imported from this module before the cluster moved to ``kaizen_local`` is still
importable from here.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kaizen_local.cluster import (
    DEFAULT_SA_PATH,
    FIELD_MANAGER,
    MANIFEST_HASH_ANNOTATION,
    Cluster,
    CrdRef,
    default_crd_files,
    kaizen_crd_files,
    kubeconfig_yaml,
    load_crds,
    third_party_crd_files,
    wait_for,
)
from kaizen_local.controlplane import SNAPSHOT_FORMAT, LocalControlPlane
from kaizen_local.fakenodes import (
    FAKE_DURATION_ANNOTATION,
    FAKE_EXIT_CODE_LABEL,
    FAKE_NODES,
    FAKE_TERMINATION_MESSAGE_ANNOTATION,
    FakeNode,
)
from kaizen_local.flags import KCM_CONTROLLERS
from kaizen_local.paths import (
    BINARIES,
    CACHE_DIR,
    K8S_VERSION,
    KAIZEN_CRDS_DIR,
    KWOK_STAGES_DIR,
    REPO_ROOT,
    THIRD_PARTY_CRDS_DIR,
    default_bin_dir,
    missing_binaries,
)
from kaizen_local.processes import ControlPlaneError

__all__ = [
    "BINARIES",
    "CACHE_DIR",
    "DEFAULT_SA_PATH",
    "FAKE_DURATION_ANNOTATION",
    "FAKE_EXIT_CODE_LABEL",
    "FAKE_NODES",
    "FAKE_TERMINATION_MESSAGE_ANNOTATION",
    "FIELD_MANAGER",
    "K8S_VERSION",
    "KAIZEN_CRDS_DIR",
    "KCM_CONTROLLERS",
    "KWOK_STAGES_DIR",
    "MANIFEST_HASH_ANNOTATION",
    "REPO_ROOT",
    "SNAPSHOT_FORMAT",
    "THIRD_PARTY_CRDS_DIR",
    "Cluster",
    "ControlPlaneError",
    "CrdRef",
    "FakeNode",
    "LocalControlPlane",
    "control_plane",
    "default_bin_dir",
    "default_crd_files",
    "kaizen_crd_files",
    "kubeconfig_yaml",
    "load_crds",
    "missing_binaries",
    "namespace",
    "namespace_name",
    "third_party_crd_files",
    "wait_for",
]


def namespace_name(test_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:48].strip("-")
    return f"t-{slug}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The session's cluster: ``KAIZEN_KUBECONFIG``'s if set, else a LocalControlPlane started here."""
    if existing := os.environ.get("KAIZEN_KUBECONFIG"):
        kubeconfig = Path(existing)
        if not kubeconfig.is_file():
            pytest.fail(f"KAIZEN_KUBECONFIG={existing} is not a file", pytrace=False)
        cluster = Cluster(kubeconfig)
        cluster.install_crds(load_crds(default_crd_files()))
        cluster.install_admission_policies()
        yield cluster
        cluster.close()
        return
    bin_dir = default_bin_dir()
    if missing := missing_binaries(bin_dir):
        reason = (
            f"control plane binaries missing in {bin_dir}: {', '.join(missing)}. Build them with "
            "tools/build-k8s-bins.sh (needs Go and the module proxy), point KUBEBUILDER_ASSETS at a "
            "directory that has them, or set KAIZEN_KUBECONFIG to a running cluster"
        )
        if os.environ.get("KAIZEN_REQUIRE_CLUSTER") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    with LocalControlPlane(tmp_path_factory.mktemp("control-plane"), bin_dir) as plane:
        yield plane


@pytest.fixture
def namespace(control_plane: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting for it to go)."""
    name = namespace_name(request.node.name)
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kaizen.dev/test": "true"}},
    }
    control_plane.request("POST", "/api/v1/namespaces", manifest)
    # ServiceAccount admission rejects pods until the controller has made the default account.
    wait_for(
        lambda: control_plane.exists(DEFAULT_SA_PATH.format(name)), what=f"ServiceAccount {name}/default"
    )
    yield name
    control_plane.request("DELETE", f"/api/v1/namespaces/{name}", query={"propagationPolicy": "Background"})
