#!/usr/bin/env bash
# Kaizen developer entrypoint.
#   tools/dev.sh setup  install the Python environment (.venv) and build the local control plane
#   tools/dev.sh demo   setup, then start a local control plane + the operator, apply examples/, show status
#   tools/dev.sh test   setup, then ruff, mypy and the whole pytest suite
# Heavy work is cached outside the work tree (~/.cache/kaizen, ~/.cache/uv, Go's caches) and skipped
# when present, so a fresh clone on a machine that ran it before starts in a minute or two.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv="$root/.venv"
py="$venv/bin/python"
# Bytecode caches matter here: without them torch, transformers and the kubernetes client are
# recompiled by every fresh interpreter (the test suite starts dozens), which costs minutes.
unset PYTHONDONTWRITEBYTECODE
export UV_COMPILE_BYTECODE=1

# The local cluster's real node (containerd, runc, bridge CNI, busybox for test pods, gcc for the pause
# image) and the runner image's daemonless build (buildah, mmdebstrap). Root with apt-get only;
# elsewhere the real-node tests skip and say why.
NODE_PACKAGES=(containerd runc containernetworking-plugins iproute2 busybox-static gcc libc6-dev openssl
  buildah mmdebstrap)
node_packages() {
  if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: not root with apt-get; skipping the real node's Debian packages"
    return 0
  fi
  local missing=() p start=$SECONDS
  for p in "${NODE_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  echo "setup: real node packages ready ($((SECONDS - start))s)"
}

setup() {
  node_packages
  local start=$SECONDS
  command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet "uv>=0.9"
  [[ -x "$py" ]] || uv venv --quiet --python python3.11 "$venv"
  uv pip install --quiet --python "$py" -e ".[runner,test]"
  echo "setup: Python environment ready ($((SECONDS - start))s)"
  if [[ -z "${KAIZEN_KUBECONFIG:-}" ]]; then
    tools/build-k8s-bins.sh
  fi
  # The runner image for the real node (minutes when cold; a hash lookup when nothing changed).
  if [[ $(id -u) == 0 ]] && command -v buildah >/dev/null 2>&1; then
    "$py" -m kaizen_local.runnerimage
  fi
}

case "${1:-}" in
  setup)
    setup
    ;;
  demo)
    setup
    exec "$py" tools/demo.py "${@:2}"
    ;;
  test)
    setup
    echo "== ruff"; "$venv/bin/ruff" check operator runner-image tests tools bench
    echo "== mypy"; "$venv/bin/mypy" operator runner-image/kaizen_runner
    echo "== crds"; "$venv/bin/kaizen-crdgen" --check
    echo "== pytest"
    export KAIZEN_REQUIRE_CLUSTER="${KAIZEN_REQUIRE_CLUSTER:-1}" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
    # As root (CI) the real node must start; elsewhere its tests skip with the reason.
    if [[ $(id -u) == 0 ]]; then export KAIZEN_REQUIRE_REAL_NODE="${KAIZEN_REQUIRE_REAL_NODE:-1}"; fi
    exec "$py" -m pytest "${@:2}"
    ;;
  *)
    echo "usage: tools/dev.sh setup|demo|test [args]" >&2
    exit 2
    ;;
esac
