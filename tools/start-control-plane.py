#!/usr/bin/env python3
"""Run Kaizen's local Kubernetes control plane in the foreground until Ctrl-C or SIGTERM.

It is the cluster the tests use (the kaizen_local package): etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok with fake GPU nodes, Kaizen's and the third-party CRDs
installed. Build the binaries first with tools/build-k8s-bins.sh.

    .venv/bin/python tools/start-control-plane.py --kubeconfig /tmp/kaizen.kubeconfig
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from kaizen_local.controlplane import LocalControlPlane
from kaizen_local.fakenodes import FAKE_NODES
from kaizen_local.paths import default_bin_dir, missing_binaries
from kaizen_local.processes import ControlPlaneError

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kubeconfig", type=Path, help="also copy the admin kubeconfig here")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=ROOT / ".cache" / "devcluster",
        help="etcd data, certificates and component logs; wiped at start (default: %(default)s)",
    )
    parser.add_argument("--bin-dir", type=Path, default=default_bin_dir(), help="default: %(default)s")
    args = parser.parse_args(argv)

    if missing := missing_binaries(args.bin_dir):
        print(
            f"missing in {args.bin_dir}: {', '.join(missing)}; run tools/build-k8s-bins.sh", file=sys.stderr
        )
        return 2
    marker = args.work_dir / ".kaizen-devcluster"
    if args.work_dir.exists() and any(args.work_dir.iterdir()) and not marker.exists():
        print(f"{args.work_dir} is not empty and not a previous work dir; not wiping it", file=sys.stderr)
        return 2
    shutil.rmtree(args.work_dir, ignore_errors=True)
    args.work_dir.mkdir(parents=True)
    marker.touch()

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    plane = LocalControlPlane(args.work_dir, args.bin_dir)
    try:
        plane.start()
        kubeconfig = plane.kubeconfig
        if args.kubeconfig:
            shutil.copyfile(plane.kubeconfig, args.kubeconfig)
            kubeconfig = args.kubeconfig.resolve()
        nodes = ", ".join(
            f"{n.name} ({n.gpus}x {n.gpu_product})" if n.gpus else f"{n.name} (CPU)" for n in FAKE_NODES
        )
        print(
            f"control plane ready in {plane.startup_seconds:.1f}s at {plane.server}\n"
            f"  ({', '.join(f'{name} {seconds:.1f}s' for name, seconds in plane.phase_seconds.items())})\n"
            f"  nodes: {nodes}\n"
            f"  CRDs:  {len(plane.crd_names)} installed\n"
            f"  logs:  {plane.log_dir}\n\n"
            f"  export KUBECONFIG={kubeconfig}\n"
            f"  kubectl get nodes\n"
            f"  KAIZEN_KUBECONFIG={kubeconfig} .venv/bin/python -m pytest -m cluster  # tests reuse it\n\n"
            "Ctrl-C stops it.",
            flush=True,
        )
        while True:
            plane.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr)
        return 0
    except ControlPlaneError as exc:
        print(f"control plane failed: {exc}", file=sys.stderr)
        return 1
    finally:
        plane.stop()


if __name__ == "__main__":
    sys.exit(main())
