"""Helper process for test_teardown.py: start a cluster with the real node and one running pod, print
"running", then stop cleanly when "stop" arrives on stdin (or get killed by the test)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from kaizen_local.cluster import wait_for
from kaizen_local.controlplane import LocalControlPlane
from kaizen_local.node.realnode import NAMESPACE_ANNOTATIONS


def main(work_dir: Path) -> None:
    with LocalControlPlane(work_dir, real_node=True) as plane:
        assert plane.node is not None
        namespace = {"metadata": {"name": "held", "annotations": NAMESPACE_ANNOTATIONS}}
        plane.request("POST", "/api/v1/namespaces", namespace)
        wait_for(lambda: plane.exists("/api/v1/namespaces/held/serviceaccounts/default"))
        container = {"name": "main", "image": plane.node.busybox_image, "command": ["sleep", "600"]}
        pod = {"metadata": {"name": "sleeper"}, "spec": {"containers": [container]}}
        plane.request("POST", "/api/v1/namespaces/held/pods", pod)

        def running() -> bool:
            status = plane.request("GET", "/api/v1/namespaces/held/pods/sleeper").get("status", {})
            return status.get("phase") == "Running"

        wait_for(running, timeout=90, what="pod held/sleeper Running")
        print("running", flush=True)
        while sys.stdin.readline().strip() != "stop":
            time.sleep(0.1)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
