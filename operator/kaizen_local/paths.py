"""Pinned versions and where the local cluster finds its binaries, CRDs and caches."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

K8S_VERSION = "v1.36.3"  # pinned by tools/k8s-bins/go.mod and tools/build-k8s-bins.sh
HELM_VERSION = "v4.3.2"  # pinned by tools/k8s-bins/helm/go.mod and tools/build-k8s-bins.sh
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
REPO_ROOT = Path(__file__).resolve().parents[2]
KAIZEN_CRDS_DIR = REPO_ROOT / "crds"
# The admission policies the chart renders from the same files: who may change a PrivateModel's sharing,
# which Secrets the operator's ServiceAccount may write.
SHARING_POLICY_FILE = REPO_ROOT / "charts" / "kaizen" / "files" / "privatemodel-sharing.yaml"
OWNED_SECRETS_POLICY_FILE = REPO_ROOT / "charts" / "kaizen" / "files" / "owned-secrets.yaml"
SHARED_DIR = REPO_ROOT.parent / "shared"  # data sets and third-party CRDs, beside the repository
THIRD_PARTY_CRDS_DIR = SHARED_DIR / "third-party-crds"
KWOK_STAGES_DIR = Path(__file__).with_name("kwok")
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kaizen"


def default_bin_dir() -> Path:
    """Where the control plane binaries are looked for (same order as tools/build-k8s-bins.sh)."""
    for var in ("KUBEBUILDER_ASSETS", "K8S_BIN_DIR"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    return CACHE_DIR / f"k8s-bin-{K8S_VERSION}"


def missing_binaries(bin_dir: Path, names: tuple[str, ...] = BINARIES) -> list[str]:
    return [name for name in names if not os.access(bin_dir / name, os.X_OK)]


def default_helm() -> Path:
    """The Helm binary the chart's tests run: $HELM_BIN_DIR's, else the one tools/build-k8s-bins.sh
    builds under the cache, else a `helm` on PATH (with KAIZEN_KUBECONFIG nothing is built)."""
    if folder := os.environ.get("HELM_BIN_DIR"):
        return Path(folder).expanduser() / "helm"
    built = CACHE_DIR / f"helm-{HELM_VERSION}" / "helm"
    found = shutil.which("helm")
    return built if built.exists() or found is None else Path(found)
