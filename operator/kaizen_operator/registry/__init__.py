"""The private model registry: pure functions (readiness, tags, status from a listing, bucket policy,
RBAC, deletion) and the thin storage I/O the operator and `kaizen-runner model` share.

Nothing here imports kopf or the kubernetes client, so the runner image uses the same code path for
a readiness verdict as the operator does.
"""
