"""Types shared by the three kinds: storage locations, data sources, model references, resources,
conditions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, StringConstraints
from pydantic.alias_generators import to_camel

from kaizen_api.base import LIST_MAX, NAME_MAX, URI_MAX, KaizenModel, Rule, StatusModel, matches

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Display names of pipelines and jobs, as the hosted console allows them.
DISPLAY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$"
# What a URL, URI or e-mail address may not hold: control characters and every Unicode space. Spelled
# out because `\s` differs between the two regex engines that read these patterns: ASCII-only (and
# without \v) in the API server's RE2, Unicode in pydantic's.
_SPACE = r"\x00-\x20\x7f-\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
NO_SPACE = "[^" + _SPACE + "]"
EMAIL = "^[^@" + _SPACE + "]+@[^@" + _SPACE + "]+[.][^@" + _SPACE + "]+$"
HTTP_URL = "^https?://" + NO_SPACE + "+$"
# A URL whose authority (before the first /, ? or #) holds userinfo: `scheme://user:password@host`.
USERINFO = "^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@"
# resource.Quantity (k8s.io/apimachinery), non-negative as a Pod's requests must be: digits with an
# optional fraction, then a binary-SI (Ki..Ei), decimal-SI (n, u, m, k, M..E) or exponent suffix.
QUANTITY = r"^[+]?([0-9]+([.][0-9]*)?|[.][0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]{1,3})?$"
# A label key (a qualified name): an optional DNS-subdomain prefix and '/', then a name of at most 63
# characters. `label_key_cel` / `is_label_key` add the prefix's bound of 253 characters.
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_KEY_MAX = NAME_MAX + 1 + 63
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"

ObjectName = Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX, pattern=DNS1123_SUBDOMAIN)]
LabelName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS1123_LABEL)]
LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE)]
Quantity = Annotated[str, StringConstraints(max_length=64, pattern=QUANTITY)]
DataFormat = Literal["alpaca", "sharegpt", "sharegpt_image", "corpus"]


def label_key_cel(expr: str) -> str:
    """CEL: the string `expr` is a label key."""
    return f"{expr}.matches('{LABEL_KEY}') && {expr}.indexOf('/') <= {NAME_MAX}"


def is_label_key(key: str) -> bool:
    """The Python twin of `label_key_cel`."""
    return matches(LABEL_KEY, key) and key.find("/") <= NAME_MAX


def exactly_one(*fields: str) -> tuple[str, ...]:
    """CEL and Python halves of an 'exactly one of these fields is set' rule."""
    cel = "[" + ", ".join(f"has(self.{f})" for f in fields) + "].filter(x, x).size() == 1"
    return cel, ", ".join(fields)


def no_userinfo(name: str, instead: str) -> Rule:
    """URL field `name` (Python name) holds no credentials: a URL is copied into the run's ConfigMap, its
    status and error messages, where anyone who reads them would see them. Secrets reach pods only
    through Secret references; `instead` says which one."""
    camel = to_camel(name)
    return Rule(
        cel=f"!has(self.{camel}) || !self.{camel}.matches('{USERINFO}')",
        message=f"{camel} must not hold credentials (user:password@ before the host); {instead}",
        field_path=f".{camel}",
        check=lambda m: getattr(m, name) is None or not matches(USERINFO, getattr(m, name)),
    )


def _count_set(model: KaizenModel, names: tuple[str, ...]) -> int:
    return sum(getattr(model, n) is not None for n in names)


class SecretRef(KaizenModel):
    """A Secret in the object's namespace."""

    name: ObjectName = Field(description="Name of the Secret in the same namespace.")


class S3Location(KaizenModel):
    """An object or prefix in an S3-compatible bucket reached through a Data Hub connection."""

    connection: SecretRef = Field(
        description="Data Hub connection: a Secret with AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY (optionally AWS_DEFAULT_REGION)."
    )
    bucket: str = Field(
        min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", description="Bucket name."
    )
    key: str = Field(
        min_length=1,
        max_length=1024,
        description="Object key (a file) or key prefix (a folder) in the bucket.",
    )


class PvcLocation(KaizenModel):
    """A file or folder on a PersistentVolumeClaim, e.g. an uploaded dataset."""

    claim_name: ObjectName = Field(description="Name of the PersistentVolumeClaim in the same namespace.")
    path: str = Field(
        default="", max_length=1024, description="Path inside the volume, relative, without '..'."
    )

    rules = (
        Rule(
            cel="!self.path.startsWith('/') && !self.path.split('/').exists(p, p == '..')",
            message="path must be relative and must not contain '..'",
            field_path=".path",
            check=lambda m: not m.path.startswith("/") and ".." not in m.path.split("/"),
        ),
    )


_SOURCE_FIELDS = ("s3", "pvc", "url")
_SOURCE_CEL, _SOURCE_NAMES = exactly_one(*_SOURCE_FIELDS)


class Location(KaizenModel):
    """Where a file or folder lives: exactly one of s3, pvc or url."""

    s3: S3Location | None = Field(default=None, description="An object in an S3-compatible bucket.")
    pvc: PvcLocation | None = Field(default=None, description="A path on a PersistentVolumeClaim.")
    url: str | None = Field(
        default=None,
        max_length=URI_MAX,
        pattern=HTTP_URL,
        description="An http(s) URL the runner downloads (read-only sources only).",
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=_SOURCE_CEL,
            message=f"exactly one of {_SOURCE_NAMES} must be set",
            check=lambda m: _count_set(m, _SOURCE_FIELDS) == 1,
        ),
        no_userinfo(
            "url",
            "a file that needs credentials belongs in a bucket reached through a connection Secret (s3)",
        ),
    )


# The file types each format takes (SPEC §2), by extension; the runner's data layer reads the same.
FORMAT_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "alpaca": ("csv", "json", "jsonl", "jsonlines", "zip", "parquet"),
    "sharegpt": ("json", "jsonl", "jsonlines", "zip", "parquet"),
    "sharegpt_image": ("zip", "parquet"),
    "corpus": ("txt", "json", "jsonl", "jsonlines", "zip", "parquet"),
}
# "The path has an extension": a dot in its last segment (for a URL: in its path, before ? or #).
_HAS_EXTENSION = {"path": r"[.][^./]+$", "url": r"^https?://[^/?#]+/[^?#]*[.][^./?#]+([?#].*)?$"}


def _allowed_extension(kind: str, extensions: tuple[str, ...]) -> str:
    names = "|".join(extensions)
    return rf"[.]({names})$" if kind == "path" else rf"^https?://[^/?#]+/[^?#]*[.]({names})([?#].*)?$"


def _extension_fits(fmt: str, value: str | None, kind: str) -> bool:
    if value is None or not matches(_HAS_EXTENSION[kind], value):
        return True
    return matches(_allowed_extension(kind, FORMAT_EXTENSIONS[fmt]), value.lower())


def _extension_rule(field: str, kind: str, value: Callable[[Any], str | None]) -> Rule:
    path = f"self.{field}"
    fits = " || ".join(
        f"(self.format == '{fmt}' && {path}.lowerAscii().matches('{_allowed_extension(kind, exts)}'))"
        for fmt, exts in FORMAT_EXTENSIONS.items()
    )
    parent = field.split(".")[0]
    takes = "; ".join(f"{fmt} takes {', '.join(exts)}" for fmt, exts in FORMAT_EXTENSIONS.items())
    return Rule(
        cel=f"!has(self.{parent}) || !{path}.matches('{_HAS_EXTENSION[kind]}') || {fits}",
        message=f"{field}: the file's extension does not fit the format ({takes})",
        field_path=f".{field}",
        check=lambda m: _extension_fits(m.format, value(m), kind),
    )


class Dataset(Location):
    """A dataset file in one of the supported formats."""

    format: DataFormat = Field(
        description="Data format: alpaca, sharegpt, sharegpt_image (images) or corpus (pre-training text). "
        "Supported file types: csv (alpaca), json, jsonl/jsonlines, zip, parquet, txt (corpus)."
    )

    rules = (
        *Location.rules,
        _extension_rule("s3.key", "path", lambda m: m.s3.key if m.s3 else None),
        _extension_rule("pvc.path", "path", lambda m: m.pvc.path if m.pvc else None),
        _extension_rule("url", "url", lambda m: m.url),
    )


class OutputStorage(KaizenModel):
    """Where produced files (checkpoints, model versions, results) are written."""

    s3: S3Location | None = Field(default=None, description="A key prefix in an S3-compatible bucket.")
    pvc: PvcLocation | None = Field(default=None, description="A folder on a PersistentVolumeClaim.")

    rules = (
        Rule(
            cel="[has(self.s3), has(self.pvc)].filter(x, x).size() == 1",
            message="exactly one of s3, pvc must be set",
            check=lambda m: _count_set(m, ("s3", "pvc")) == 1,
        ),
    )


class PrivateModelVersionRef(KaizenModel):
    """A version of a PrivateModel in the same namespace."""

    name: ObjectName = Field(description="Name of the PrivateModel.")
    version: str | None = Field(
        default=None,
        max_length=NAME_MAX,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Version name; the newest ready version when omitted.",
    )


_MODEL_FIELDS = ("catalog", "private_model", "uri")
# On every model reference (an EvalJob's adds its own sources to ModelRef's rules).
MODEL_URI_RULE = no_userinfo(
    "uri", "the runner reaches models with the operator's credentials, which live in Secrets"
)


class ModelRef(KaizenModel):
    """A base model: a catalog entry, a version of a PrivateModel, or a direct URI."""

    catalog: str | None = Field(
        default=None,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Name of a model catalog entry, e.g. Llama-3.2-1B or Qwen2.5-0.5B-Instruct.",
    )
    private_model: PrivateModelVersionRef | None = Field(
        default=None, description="A version of a PrivateModel; only ready versions can be used."
    )
    uri: str | None = Field(
        default=None,
        max_length=URI_MAX,
        pattern="^(hf|s3|pvc)://" + NO_SPACE + "+$",
        description="A model location: hf://org/name, s3://bucket/prefix or pvc://claim/path.",
    )

    rules = (
        Rule(
            cel=exactly_one("catalog", "privateModel", "uri")[0],
            message="exactly one of catalog, privateModel, uri must be set",
            check=lambda m: _count_set(m, _MODEL_FIELDS) == 1,
        ),
        MODEL_URI_RULE,
    )


class Toleration(KaizenModel):
    """A pod toleration (core/v1 Toleration), with the Pod API's checks of its fields together."""

    key: str | None = Field(default=None, max_length=LABEL_KEY_MAX, description="Taint key to tolerate.")
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal (the default)."
    )
    value: LabelValue | None = Field(default=None, description="Taint value matched with Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; all effects when empty."
    )
    toleration_seconds: int | None = Field(
        default=None, ge=0, description="How long a NoExecute taint is tolerated."
    )

    rules = (
        Rule(
            cel="!has(self.key) || self.key == '' || (" + label_key_cel("self.key") + ")",
            message="key must be a label key: an optional DNS subdomain prefix and '/', then a name of "
            "letters, digits, '-', '_' or '.'",
            field_path=".key",
            check=lambda m: not m.key or is_label_key(m.key),
        ),
        Rule(
            cel="(has(self.operator) && self.operator == 'Exists') || (has(self.key) && self.key != '')",
            message="key is required unless operator is Exists (which tolerates every taint)",
            field_path=".key",
            check=lambda m: m.operator == "Exists" or bool(m.key),
        ),
        Rule(
            cel="!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
            message="value must be empty when operator is Exists",
            field_path=".value",
            check=lambda m: m.operator != "Exists" or not m.value,
        ),
        Rule(
            cel="!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            message="tolerationSeconds is only for effect NoExecute",
            field_path=".tolerationSeconds",
            check=lambda m: m.toleration_seconds is None or m.effect == "NoExecute",
        ),
    )


class Resources(KaizenModel):
    """Compute for one run: GPUs per node, nodes, placement and queueing."""

    gpus_per_node: int = Field(default=1, ge=0, le=16, description="GPUs (nvidia.com/gpu) on each node.")
    nodes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Nodes of one run; more than one runs as a PyTorchJob or an Indexed Job.",
    )
    cpu: Quantity | None = Field(default=None, description="CPU request of each node's container, e.g. '8'.")
    memory: Quantity | None = Field(
        default=None, description="Memory request of each node's container, e.g. 64Gi."
    )
    node_selector: dict[str, LabelValue] | None = Field(
        default=None, max_length=LIST_MAX, description="Node labels the run's pods must match."
    )
    tolerations: list[Toleration] | None = Field(
        default=None, max_length=LIST_MAX, description="Tolerations of the run's pods."
    )
    priority_class_name: ObjectName | None = Field(
        default=None, description="PriorityClass of the run's pods."
    )
    queue_name: LabelName | None = Field(
        default=None, description="Kueue LocalQueue; sets the kueue.x-k8s.io/queue-name label."
    )
    multi_node_backend: Literal["pytorchjob", "indexedjob"] | None = Field(
        default=None,
        description="Workload of a multi-node run: pytorchjob (Kubeflow PyTorchJob) or indexedjob "
        "(Indexed Job + headless Service, any cluster); the operator's setting when omitted.",
    )

    rules = (
        Rule(
            cel="!has(self.nodeSelector) || self.nodeSelector.all(k, " + label_key_cel("k") + ")",
            message="nodeSelector keys must be label keys: an optional DNS subdomain prefix and '/', then "
            "a name of letters, digits, '-', '_' or '.'",
            field_path=".nodeSelector",
            check=lambda m: all(is_label_key(k) for k in m.node_selector or {}),
        ),
    )


class Condition(StatusModel):
    """A metav1.Condition."""

    type: str = Field(max_length=316, description="Condition type in CamelCase, e.g. Ready or Succeeded.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the condition was set for."
    )
    last_transition_time: datetime = Field(description="When the status last changed.")
    reason: str = Field(max_length=1024, description="Machine-readable CamelCase reason.")
    message: str = Field(default="", max_length=32768, description="Human-readable details.")


Conditions = Annotated[
    list[Condition],
    Field(
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
]
