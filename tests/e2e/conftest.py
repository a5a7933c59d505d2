"""One real-node cluster with the demo's stack (runner image, S3 server on the bridge's host address,
the tiny model as a catalog mirror, the operator as a subprocess) shared by the module's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kaizen_local.demostack import DemoStack, Stages
from kaizen_local.runnerimage import RunnerImageBuild
from support.realnode import RealNodeClusters


@pytest.fixture(scope="module")
def stack(
    real_node_clusters: RealNodeClusters,
    runner_image_build: tuple[str, RunnerImageBuild],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DemoStack]:
    cluster = real_node_clusters.get()
    reference, build = runner_image_build

    def image() -> str:
        assert cluster.node is not None
        cluster.node.import_built(reference, build)
        return reference

    work_dir: Path = tmp_path_factory.mktemp("e2e")
    demo = DemoStack(cluster, work_dir, Stages()).start(image)
    try:
        yield demo
    finally:
        demo.close()
