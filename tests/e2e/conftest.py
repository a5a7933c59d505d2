"""One real-node cluster with the demo's stack (runner image, S3 server on the bridge's host address,
the tiny model as a catalog mirror, the operator as a subprocess) shared by the module's tests.
Where the real node cannot start, the ``real_node_clusters`` fixture skips them and says why (as root
with ``KAIZEN_REQUIRE_REAL_NODE=1``, CI's setting, it fails instead)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kaizen_local.demostack import DemoStack, Stages
from support.realnode import RealNodeClusters


@pytest.fixture(scope="module")
def stack(
    real_node_clusters: RealNodeClusters,
    runner_image_reference: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DemoStack]:
    cluster = real_node_clusters.get()
    reference = runner_image_reference

    def image() -> str:
        assert cluster.node is not None
        cluster.node.import_built(reference)
        return reference

    work_dir: Path = tmp_path_factory.mktemp("e2e")
    demo = DemoStack(cluster, work_dir, Stages()).start(image)
    try:
        yield demo
    finally:
        demo.close()
