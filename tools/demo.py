#!/usr/bin/env python3
"""The README's demo: Kaizen's main job for real on this machine.

A local control plane with one real node (containerd + runc + kubelet), the runner image built from
runner-image/Dockerfile, an S3 server holding a tiny model (the mirror of the catalog entry in
examples/demo/catalog-tiny.yaml) and a ../shared/datasets file, and the operator. One
FineTunePipeline trains the tiny model (preflight pod, training pod), then one EvalJob scores the new
PrivateModel version (eval pod), watched live. Where the real node cannot start, the demo says why
and runs on kwok's fake nodes instead: the pods' lifecycle is then faked, so nothing trains.

    tools/dev.sh demo            # run it and stop
    tools/dev.sh demo --keep     # keep the cluster and operator running until Ctrl-C
"""

from __future__ import annotations

import argparse
import fcntl
import shutil
import signal
import sys
import time
from typing import Any

from kaizen_api.base import GROUP, VERSION
from kaizen_local import demomanifests as manifests
from kaizen_local.controlplane import LocalControlPlane
from kaizen_local.demostack import MODELS_BUCKET, DemoStack, Stages
from kaizen_local.demowatch import Watch
from kaizen_local.node.realnode import NODE_DIR, unavailable_reason
from kaizen_local.paths import CACHE_DIR, default_bin_dir, missing_binaries

NAMESPACE = "kaizen-demo"
MODEL, PIPELINE, EVAL = "tiny-assistant", "sft-tiny", "eval-tiny"
API = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}"
KINDS = {"finetunepipelines": "ftp", "evaljobs": "ej"}
DONE = {"Succeeded", "Failed"}


def real_node_reason() -> str | None:
    bin_dir = default_bin_dir()
    if missing := missing_binaries(bin_dir, ("kubelet",)):
        return f"missing in {bin_dir}: {', '.join(missing)} (run tools/build-k8s-bins.sh)"
    from kaizen_local import runnerimage

    return unavailable_reason(bin_dir) or runnerimage.unavailable_reason() or node_in_use()


def node_in_use() -> str | None:
    """The node is a machine-wide singleton: another session (a test run, another demo) may hold it."""
    lock = NODE_DIR / "lock"
    if not lock.exists():
        return None
    with lock.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            return f"the real node is in use by pid {handle.read().strip() or '?'} (only one can run)"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def runner_image(cluster: LocalControlPlane) -> str:
    from kaizen_local.runnerimage import RunnerImageBuild

    build = RunnerImageBuild(log=lambda line: print(f"    {line}"))
    reference = build.runner(build.base())
    assert cluster.node is not None
    cluster.node.import_built(reference)
    return reference


def get(cluster: LocalControlPlane, plural: str, name: str) -> dict[str, Any]:
    return cluster.request("GET", f"{API}/{plural}/{name}")  # type: ignore[no-any-return]


def phase(cluster: LocalControlPlane, plural: str, name: str) -> str | None:
    return (get(cluster, plural, name).get("status") or {}).get("phase")


def ready_version(cluster: LocalControlPlane) -> dict[str, Any] | None:
    status = get(cluster, "privatemodels", MODEL).get("status") or {}
    return next((v for v in status.get("versions") or [] if v.get("ready")), None)


def run_demo(stack: DemoStack, timeout: float) -> bool:
    cluster = stack.cluster
    stack.namespace(NAMESPACE)
    cluster.request("POST", f"{API}/privatemodels", manifests.private_model(MODEL))
    pipeline = manifests.pipeline(PIPELINE, MODEL, hyperparameters=manifests.WATCHED)
    cluster.request("POST", f"{API}/finetunepipelines", pipeline)
    print(f"\n$ kubectl get ftp,ej -n {NAMESPACE} -w      # FineTunePipeline {PIPELINE} created")
    watch = Watch(cluster, NAMESPACE, KINDS)

    def trained() -> bool:
        stack.check_operator()
        return phase(cluster, "finetunepipelines", PIPELINE) in DONE and (
            phase(cluster, "finetunepipelines", PIPELINE) == "Failed" or ready_version(cluster) is not None
        )

    if not watch.until(trained, timeout) or (version := ready_version(cluster)) is None:
        print(f"the pipeline did not produce a ready version; operator log: {stack.operator_log}")
        return False
    cluster.request("POST", f"{API}/evaljobs", manifests.evaljob(EVAL, MODEL, version["name"]))
    watch.out(f"          EvalJob {EVAL} created for {MODEL} version {version['name']}")

    def evaluated() -> bool:
        stack.check_operator()
        return phase(cluster, "evaljobs", EVAL) in DONE

    finished = watch.until(evaluated, timeout)
    report(stack, version["name"])
    return finished and phase(cluster, "evaljobs", EVAL) == "Succeeded"


def report(stack: DemoStack, version_name: str) -> None:
    cluster = stack.cluster
    model = get(cluster, "privatemodels", MODEL)
    version = next(v for v in model["status"]["versions"] if v["name"] == version_name)
    print(f"\nPrivateModel {MODEL}: latest version {model['status'].get('latestVersion')}")
    print(
        f"  {version_name}: status={version.get('status')} ready={version.get('ready')} "
        f"files={version.get('fileCount')} size={version.get('sizeBytes')}B"
    )
    ej = get(cluster, "evaljobs", EVAL).get("status") or {}
    for name, score in sorted((ej.get("results") or {}).items()):
        print(f"  {name:<16} {score}")
    if ej.get("message") and ej.get("phase") != "Succeeded":
        print(f"  EvalJob message: {ej['message']}")
    assert stack.s3 is not None
    folder = stack.s3.root / MODELS_BUCKET / MODEL / version_name
    print(
        f"\nloss curve: {folder / 'loss_curve.png'}; training report: {folder / 'training_report.json'}; "
        f"eval results: {ej.get('resultsUri')} (the S3 server serves {stack.s3.root})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", action="store_true", help="keep running until Ctrl-C")
    parser.add_argument(
        "--require-real-node", action="store_true", help="fail instead of falling back to kwok"
    )
    parser.add_argument("--timeout", type=float, default=1200, help="seconds to wait for each object")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the cluster on a plain kill too
    started = time.monotonic()
    stages = Stages()
    reason = real_node_reason()
    if reason and args.require_real_node:
        print(f"the real node cannot start here: {reason}", file=sys.stderr)
        return 2
    if reason:
        print(
            f"NOTE: the real node cannot start here: {reason}.\n"
            "      Falling back to kwok's fake nodes: pods are scheduled but never run, so the pipeline "
            "and the EvalJob will not train or score anything."
        )
    work_dir = CACHE_DIR / "demo-run"
    shutil.rmtree(work_dir, ignore_errors=True)  # a fresh etcd and bucket each time; caches live elsewhere
    cluster = LocalControlPlane(work_dir / "cluster", real_node=reason is None)
    ok = False
    try:
        stages.run("control plane" + ("" if reason else " + real node"), cluster.start)
        image = None if reason else (lambda: runner_image(cluster))
        stack = DemoStack(cluster, work_dir, stages).start(image)
        try:
            ok = run_demo(stack, args.timeout)
            print(f"\nsetup stages: {stages.seconds}; demo total {time.monotonic() - started:.0f}s")
            print(f"KUBECONFIG={cluster.kubeconfig}")
            if args.keep:
                print("cluster and operator keep running; Ctrl-C stops them")
                while True:
                    time.sleep(3600)
        finally:
            stack.close()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
