"""One real-node cluster with the demo's stack (runner image, S3 server on the bridge's host address,
the tiny model as a catalog mirror, the operator as a subprocess) shared by the module's tests.

These tests have not yet passed end to end on the real node, so they run only when asked for with
``KAIZEN_E2E=1``; until then CI skips them and says why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from kaizen_local.demostack import DemoStack, Stages
from kaizen_local.runnerimage import RunnerImageBuild
from support.realnode import RealNodeClusters


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("KAIZEN_E2E") == "1":
        return
    skip = pytest.mark.skip(reason="end-to-end tests on the real node run only with KAIZEN_E2E=1")
    here = Path(__file__).parent
    for item in items:
        if Path(item.path).is_relative_to(here):
            item.add_marker(skip)


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
