"""pytest fixture for Helm: ``helm(*args, kubeconfig=...)`` runs the pinned Helm binary
(``kaizen_local.paths.default_helm``) with a home of its own, so a developer's repositories and
plugins play no part. Without the binary the tests that ask for it are skipped with the reason, or
fail when ``KAIZEN_REQUIRE_CLUSTER=1``."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from kaizen_local.paths import REPO_ROOT, default_helm

CHART = REPO_ROOT / "charts" / "kaizen"
Helm = Callable[..., str]


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """`helm(*args)` returns Helm's stdout and fails the test, with its output, on a non-zero exit."""
    binary = default_helm()
    if not os.access(binary, os.X_OK):
        reason = f"no helm at {binary}: run tools/build-k8s-bins.sh, set HELM_BIN_DIR or put helm on PATH"
        if os.environ.get("KAIZEN_REQUIRE_CLUSTER") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("helm-home")
    env = {**os.environ, **{f"HELM_{d}_HOME": str(home / d.lower()) for d in ("CACHE", "CONFIG", "DATA")}}

    def run(*args: str, kubeconfig: Path | None = None) -> str:
        extra = ["--kubeconfig", str(kubeconfig)] if kubeconfig else []
        done = subprocess.run(
            [str(binary), *args, *extra], env=env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, f"helm {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    return run
