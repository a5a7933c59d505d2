"""pytest fixtures for the local cluster's real node (``kaizen_local.node``): pods that really run.

``real_node_cluster`` is a ``LocalControlPlane`` with the real node, started once and shared by every
test that asks for it; ``real_node_namespace`` is a fresh namespace whose pods all go to the real node
(``NAMESPACE_ANNOTATIONS``); ``host_s3_server`` is an S3 server that pods reach at the bridge's host
address; ``runner_image`` is the runner image built from its Dockerfile and imported into the node;
``real_node_env`` bundles them for end-to-end tests (with the operator's environment for the node).
Where the node cannot start (not root, packages or kubelet missing) the tests are skipped with the
reason, or fail when ``KAIZEN_REQUIRE_REAL_NODE=1`` (CI, set by tools/dev.sh test as root).

The node is a machine-wide singleton, so the shared cluster can be released (``RealNodeClusters``)
for a test that starts and kills a node of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kaizen_local import runnerimage
from kaizen_local.cluster import DEFAULT_SA_PATH, wait_for
from kaizen_local.controlplane import LocalControlPlane
from kaizen_local.node.network import HOST_ADDRESS
from kaizen_local.node.realnode import NAMESPACE_ANNOTATIONS, RealNodeBusy, unavailable_reason
from kaizen_local.paths import default_bin_dir, missing_binaries
from kaizen_local.runnerimage import RunnerImageBuild
from kaizen_local.s3server import S3Server, S3ServerError, run_s3_server
from support.controlplane import namespace_name


class RealNodeClusters:
    """Starts the shared real-node cluster on first use; ``release`` stops it until the next use."""

    def __init__(self, work_root: Path) -> None:
        self.work_root = work_root
        self.starts = 0
        self.plane: LocalControlPlane | None = None

    def get(self) -> LocalControlPlane:
        """The running cluster, started if need be; a node held by another process on this machine
        skips the test (fails it when KAIZEN_REQUIRE_REAL_NODE=1)."""
        if self.plane is None:
            self.starts += 1
            plane = LocalControlPlane(self.work_root / f"cluster-{self.starts}", real_node=True)
            try:
                plane.start()
            except RealNodeBusy as busy:
                if os.environ.get("KAIZEN_REQUIRE_REAL_NODE") == "1":
                    raise
                pytest.skip(str(busy))
            self.plane = plane
        return self.plane

    def release(self) -> None:
        if self.plane is not None:
            plane, self.plane = self.plane, None
            plane.stop()


def real_node_unavailable() -> str | None:
    bin_dir = default_bin_dir()
    if missing := missing_binaries(bin_dir, ("kubelet", "etcd", "kube-apiserver")):
        return f"missing in {bin_dir}: {', '.join(missing)} (run tools/build-k8s-bins.sh)"
    return unavailable_reason(bin_dir)


@pytest.fixture(scope="session")
def real_node_clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealNodeClusters]:
    if reason := real_node_unavailable():
        if os.environ.get("KAIZEN_REQUIRE_REAL_NODE") == "1":
            pytest.fail(f"KAIZEN_REQUIRE_REAL_NODE=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    clusters = RealNodeClusters(tmp_path_factory.mktemp("real-node"))
    try:
        yield clusters
    finally:
        clusters.release()


@pytest.fixture
def real_node_cluster(real_node_clusters: RealNodeClusters) -> LocalControlPlane:
    return real_node_clusters.get()


@pytest.fixture
def real_node_namespace(
    real_node_cluster: LocalControlPlane, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh namespace whose pods run on the real node, deleted afterwards."""
    name = namespace_name(request.node.name)
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {"kaizen.dev/test": "true"},
            "annotations": NAMESPACE_ANNOTATIONS,
        },
    }
    real_node_cluster.request("POST", "/api/v1/namespaces", manifest)
    wait_for(
        lambda: real_node_cluster.exists(DEFAULT_SA_PATH.format(name)), what=f"ServiceAccount {name}/default"
    )
    yield name
    real_node_cluster.request(
        "DELETE", f"/api/v1/namespaces/{name}", query={"propagationPolicy": "Background"}, missing_ok=True
    )


@pytest.fixture
def host_s3_server(real_node_cluster: LocalControlPlane, tmp_path: Path) -> Iterator[S3Server]:
    """An S3 server on the pod bridge's host address: what pods on the real node reach."""
    (tmp_path / "s3").mkdir()
    try:
        with run_s3_server(tmp_path / "s3", tmp_path / "rclone.log", host=HOST_ADDRESS) as server:
            yield server
    except S3ServerError as exc:  # raised only while starting
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def runner_image_reference() -> str:
    """The runner image built from runner-image/Dockerfile (cached by content; minutes when cold), or
    ``KAIZEN_TEST_RUNNER_IMAGE``'s image, built before and found in buildah's storage or the node's
    containerd (any change under operator/ or runner-image/ changes the content hash)."""
    if reason := runnerimage.unavailable_reason():
        if os.environ.get("KAIZEN_REQUIRE_REAL_NODE") == "1":
            pytest.fail(f"KAIZEN_REQUIRE_REAL_NODE=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    if prebuilt := os.environ.get("KAIZEN_TEST_RUNNER_IMAGE"):
        return prebuilt
    build = RunnerImageBuild()
    return build.runner(build.base())


@pytest.fixture
def runner_image(real_node_cluster: LocalControlPlane, runner_image_reference: str) -> str:
    """The runner image's reference, imported into the real node's containerd (once per image)."""
    assert real_node_cluster.node is not None
    real_node_cluster.node.import_built(runner_image_reference)
    return runner_image_reference


@dataclass(frozen=True)
class RealNodeEnv:
    """What an end-to-end test on the real node works with: the cluster, a namespace whose pods run on
    the real node, the runner image in its containerd, and an S3 server those pods reach."""

    cluster: LocalControlPlane
    namespace: str
    runner_image: str
    s3: S3Server

    def operator_env(self, progress_port: int) -> dict[str, str]:
        """Environment for ``python -m kaizen_operator.main`` on the host: its run pods use the local
        runner image (never pulled) and report progress to the host's bridge address, where the
        operator's progress endpoint must listen (on 0.0.0.0 or ``HOST_ADDRESS``)."""
        return {
            **self.cluster.env,
            "KAIZEN_RUNNER_IMAGE": self.runner_image,
            "KAIZEN_IMAGE_PULL_POLICY": "Never",
            "KAIZEN_PROGRESS_URL": f"http://{HOST_ADDRESS}:{progress_port}",
            "KAIZEN_PROGRESS_PORT": str(progress_port),
            "KAIZEN_HF_HUB_OFFLINE": "true",
        }

    def create_s3_secret(self, name: str = "datahub") -> str:
        """The S3 server's connection as a Secret in the namespace (what the CRs' connections name)."""
        manifest = self.s3.secret(name)
        self.cluster.request("POST", f"/api/v1/namespaces/{self.namespace}/secrets", manifest)
        return name


@pytest.fixture
def real_node_env(
    real_node_cluster: LocalControlPlane,
    real_node_namespace: str,
    runner_image: str,
    host_s3_server: S3Server,
) -> RealNodeEnv:
    return RealNodeEnv(real_node_cluster, real_node_namespace, runner_image, host_s3_server)
