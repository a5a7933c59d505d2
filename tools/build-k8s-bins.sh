#!/usr/bin/env bash
# Build the pinned Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler), the real node's kubelet and kwok from Go modules into $K8S_BIN_DIR (default ~/.cache/kaizen/k8s-bin-VERSION, outside the work tree,
# so a fresh clone on the same machine reuses it), and Helm (the chart's tests) into $HELM_BIN_DIR
# (default ~/.cache/kaizen/helm-VERSION). Idempotent: each binary is skipped when it already reports the pinned version.
# Honours KUBEBUILDER_ASSETS: when set, its control plane binaries are used and only Helm is built.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
K=v1.36.3            # must match tools/k8s-bins/go.mod
KWOK=v0.8.0
HELM=v4.3.2          # must match tools/k8s-bins/helm/go.mod and kaizen_local/paths.py
cache=${XDG_CACHE_HOME:-$HOME/.cache}/kaizen
OUT=${K8S_BIN_DIR:-$cache/k8s-bin-$K}
HELM_OUT=${HELM_BIN_DIR:-$cache/helm-$HELM}
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-trimpath

start=$(date +%s)
# Helm from its own module (tools/k8s-bins/helm), so its newer k8s.io libraries never reach the control plane's.
mkdir -p "$HELM_OUT"
HELM_OUT=$(cd "$HELM_OUT" && pwd)  # absolute: the build below runs from tools/k8s-bins/helm
if [[ -x "$HELM_OUT/helm" ]] && [[ $("$HELM_OUT/helm" version --template '{{.Version}}' 2>/dev/null) == "$HELM" ]]; then
  echo "helm $HELM present"
else
  echo "building helm $HELM"
  (cd "$root/tools/k8s-bins/helm" && go build -o "$HELM_OUT/helm" \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
    helm.sh/helm/v4/cmd/helm)
fi

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS is set: using its binaries, building no control plane"
  exit 0
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)  # absolute: the builds below run from tools/k8s-bins

has_version() {  # has_version BINARY PATTERN
  [[ -x "$OUT/$1" ]] && "$OUT/$1" --version 2>/dev/null | grep -q -- "$2"
}

minor=${K#v1.}; minor=${minor%%.*}
V=k8s.io/component-base/version; C=k8s.io/client-go/pkg/version; LD="-s -w"
for p in $V $C; do  # kwok and tests read --version; without stamping it says v0.0.0-master
  LD="$LD -X $p.gitVersion=$K -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=2026-01-01T00:00:00Z"
done

cd "$root/tools/k8s-bins"
for bin in kube-apiserver kube-controller-manager kube-scheduler kubelet; do
  if has_version "$bin" "$K"; then echo "$bin $K present"; continue; fi
  echo "building $bin $K"
  go build -ldflags "$LD" -o "$OUT/$bin" "k8s.io/kubernetes/cmd/$bin"
done
etcd_v=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
if has_version etcd "${etcd_v#v}"; then echo "etcd $etcd_v present"; else
  echo "building etcd $etcd_v"
  go build -ldflags "-s -w" -o "$OUT/etcd" go.etcd.io/etcd/server/v3
fi
cd "$root"
if has_version kwok "$KWOK"; then echo "kwok $KWOK present"; else
  echo "building kwok $KWOK"   # its own module graph (newer k8s.io libraries)
  GOBIN="$OUT" go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK"
fi
echo "control plane binaries ready in $OUT, helm in $HELM_OUT ($(( $(date +%s) - start ))s)"
