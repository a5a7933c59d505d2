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

setup() {
  command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet "uv>=0.9"
  [[ -x "$py" ]] || uv venv --quiet --python python3.11 "$venv"
  uv pip install --quiet --python "$py" -e ".[runner,test]"
  if [[ -z "${KAIZEN_KUBECONFIG:-}" ]]; then
    tools/build-k8s-bins.sh
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
    exec "$py" -m pytest "${@:2}"
    ;;
  *)
    echo "usage: tools/dev.sh setup|demo|test [args]" >&2
    exit 2
    ;;
esac
