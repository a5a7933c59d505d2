"""Where `kaizen-runner model` reads or writes: `s3://bucket/prefix` (credentials from the AWS_*
environment) or `pm/NAME` (the PrivateModel's storage and its connection Secret, through the kubeconfig)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kaizen_api.kinds import PRIVATE_MODEL
from kaizen_api.privatemodel import PrivateModelSpec

from kaizen_runner.storage import ObjectStore, S3Connection, StorageError, parse_s3_url


@dataclass
class Target:
    """A model's storage root in a bucket, and the PrivateModel's status when it came from one."""

    objects: ObjectStore
    bucket: str
    prefix: str
    status: dict[str, Any] | None = None

    def version_prefix(self, version: str) -> str:
        return f"{self.prefix.strip('/')}/{version}".lstrip("/")


def _namespace(kubeconfig: str | None, context: str | None) -> str:
    from kubernetes import config

    try:
        _, current = config.list_kube_config_contexts(config_file=kubeconfig)
    except Exception:  # no kubeconfig file: in a pod, the default namespace
        return "default"
    if context:
        contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
        current = next((c for c in contexts if c["name"] == context), current)
    return str((current.get("context") or {}).get("namespace") or "default")


def resolve(
    where: str, *, namespace: str | None = None, kubeconfig: str | None = None, context: str | None = None
) -> Target:
    """`s3://bucket/prefix` or `pm/NAME` -> the storage to use; StorageError with a clear message."""
    if where.startswith("s3://"):
        bucket, prefix = parse_s3_url(where)
        return Target(ObjectStore(S3Connection.from_env()), bucket, prefix)
    kind, _, name = where.partition("/")
    if kind not in ("pm", "privatemodel", PRIVATE_MODEL.plural) or not name:
        raise StorageError(f"{where!r}: expected s3://bucket/prefix or pm/NAME", cause="bad_config")
    from kaizen_api.base import GROUP, VERSION
    from kaizen_operator.kube import ApiError, Kube, kubeconfig_client
    from kaizen_operator.registry.storage import read_secret

    kube = Kube(kubeconfig_client(kubeconfig, context))
    ns = namespace or _namespace(kubeconfig, context)
    try:
        body = kube.get(f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PRIVATE_MODEL.plural}/{name}")
        if body is None:
            raise StorageError(f"PrivateModel {ns}/{name} does not exist", cause="bad_config")
        spec = PrivateModelSpec.model_validate(body["spec"])
        if spec.storage.s3 is None:
            raise StorageError(
                f"PrivateModel {ns}/{name} lives on a volume; copy the files into the volume instead",
                cause="bad_config",
            )
        connection = S3Connection.from_secret(read_secret(kube, ns, spec.storage.s3.connection.name))
    except ApiError as err:
        raise StorageError(
            f"cannot read PrivateModel {ns}/{name} or its connection: {err}", cause="access_denied"
        ) from None
    return Target(
        ObjectStore(connection), spec.storage.s3.bucket, spec.storage.s3.key, body.get("status") or {}
    )
