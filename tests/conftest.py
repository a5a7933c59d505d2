"""Shared pytest wiring: each real service the tests need lives in a plugin under tests/support/."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "support.controlplane",
    "support.s3server",
    "support.realnode",
]

# The real node (containerd, kubelet, the pod bridge) is one per machine: under pytest-xdist every
# test that uses it runs on the same worker (`--dist loadgroup`), one after another.
_REAL_NODE_DIRS = ("node", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).parent
    for item in items:
        parts = Path(item.path).relative_to(tests_dir).parts
        if parts and parts[0] in _REAL_NODE_DIRS:
            item.add_marker(pytest.mark.xdist_group("real-node"))
