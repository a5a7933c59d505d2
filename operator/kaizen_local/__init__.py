"""Kaizen's local cluster: a real Kubernetes control plane started from local binaries (no Docker).

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (fake GPU and CPU nodes whose
pods follow the Stage files in ``kwok/``), Kaizen's and the third-party CRDs installed, and a local S3
server. The demo (``tools/demo.py``), the foreground launcher (``tools/start-control-plane.py``) and
the tests (through the fixtures in ``tests/support/``) all use it.

Modules: ``paths`` (pinned versions, where binaries and caches live), ``cluster`` (a reachable cluster
and its client helpers), ``fakenodes`` (the kwok nodes), ``processes`` (child processes and health
probes), ``controlplane`` (``LocalControlPlane``), ``s3server`` (rclone's S3 server) and
``tinymodels`` (tiny models built locally, so nothing is downloaded).
"""
