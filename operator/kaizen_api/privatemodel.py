"""PrivateModel: a registry entry for a user-owned model, its versions, tags and sharing."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from kaizen_api.base import NAME_MAX, URI_MAX, KaizenModel, StatusModel, immutable
from kaizen_api.common import EMAIL, NO_SPACE, Conditions, OutputStorage, no_userinfo

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# An IPv4 address or CIDR range: each octet 0-255, suffix /0-/32 (SPEC §5).
IPV4_OR_CIDR = rf"^({_OCTET}\.){{3}}{_OCTET}(/(3[0-2]|[12]?[0-9]))?$"
MODEL_SIZE = r"^[0-9]+(\.[0-9]+)?[KMBT]$"

IPv4OrCidr = Annotated[str, StringConstraints(max_length=18, pattern=IPV4_OR_CIDR)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=63)]
TagList = Annotated[list[Tag], Field(max_length=20)]


class Tags(KaizenModel):
    """Tags by category, shown and searchable in the registry."""

    framework: TagList | None = Field(default=None, description="e.g. PyTorch, TensorFlow.")
    architecture: TagList | None = Field(default=None, description="e.g. Llama, Qwen2, Bert.")
    subject: TagList | None = Field(default=None, description="e.g. medicine, finance, education.")
    task: TagList | None = Field(
        default=None, description="e.g. text-generation, text-classification, embedding."
    )
    other: TagList | None = Field(default=None, description="Free-form tags.")


class Share(KaizenModel):
    """Access granted to one user of a tenant."""

    email: str = Field(max_length=254, pattern=EMAIL, description="The user's e-mail.")
    tenant: str = Field(min_length=1, max_length=63, description="The user's tenant.")
    role: Literal["viewer", "editor", "owner"] = Field(
        default="viewer", description="viewer, editor or owner."
    )


class PrivateModelSpec(KaizenModel):
    """Registry fields of a private model; versions are discovered from its storage."""

    title: str = Field(min_length=1, max_length=200, description="Title shown in the registry.")
    description: str | None = Field(default=None, max_length=2000, description="Short description.")
    base_model: str | None = Field(
        default=None, max_length=NAME_MAX, description="The model it derives from, e.g. Llama-3.1-8B."
    )
    model_size: str | None = Field(
        default=None, max_length=16, pattern=MODEL_SIZE, description="Size in parameters, e.g. 7B, 13B, 0.5B."
    )
    ip_allow_list: list[IPv4OrCidr] | None = Field(
        default=None,
        max_length=10,
        description="At most 10 IPv4 addresses or CIDR ranges allowed to download; everyone when empty.",
    )
    avatar_url: str | None = Field(
        default=None,
        max_length=URI_MAX,
        pattern="^(https?|s3)://" + NO_SPACE + "+$",
        description="Avatar image URL.",
    )
    overview: str | None = Field(default=None, max_length=65536, description="Rich-text (Markdown) overview.")
    tags: Tags | None = Field(default=None, description="Tags by category.")
    storage: OutputStorage = Field(
        description="Where the model's versions live (one folder per version); fixed at creation, since "
        "the versions, their allow-list and a Delete policy's clean-up all belong to that place."
    )
    sharing: list[Share] | None = Field(
        default=None, max_length=100, description="Users the model is shared with."
    )
    deletion_policy: Literal["Retain", "Delete"] = Field(
        default="Retain",
        description="What deleting this object does to the stored files: Retain keeps them, "
        "Delete removes them. "
        "Deletion also needs the annotation kaizen.dev/confirm-delete set to the object's name.",
    )

    rules = (
        immutable("storage"),
        no_userinfo("avatar_url", "everyone who may see the model reads it; use a public image URL"),
    )


# Bounds that keep a PrivateModel far below etcd's object size limit, whatever the storage holds: a
# version lists its first files inline and the full listing in a file in the model's storage.
FILES_INLINE_MAX = 50
VERSIONS_MAX = 200
MISSING_MAX = 20
MESSAGE_MAX = 4096
VersionStatus = Literal["created", "uploading", "training", "ready", "deployed", "failed"]


class ModelFile(StatusModel):
    """A file of a version."""

    name: str = Field(max_length=1024, description="Path inside the version folder.")
    size_bytes: int = Field(ge=0, description="Size in bytes.")
    modified: datetime | None = Field(default=None, description="Last modification time.")


class ReadinessTags(StatusModel):
    """Tags derived from a version's files, e.g. family Llama, type LLM, size 8B, instruction-tuned."""

    family: str | None = Field(default=None, max_length=63, description="Model family, e.g. Llama.")
    type: Literal["LLM", "VLM"] | None = Field(
        default=None, description="LLM (text) or VLM (text and image)."
    )
    size: str | None = Field(default=None, max_length=16, description="Parameter count, e.g. 8B.")
    parameters: int | None = Field(
        default=None, ge=0, description="Parameter count computed from config.json."
    )
    instruction_tuned: bool | None = Field(
        default=None, description="Whether the model is instruction-tuned (it has a chat template)."
    )
    adapter: bool | None = Field(default=None, description="The version is a LoRA adapter of a base model.")


EVALUATIONS_MAX = 10


class VersionEvaluation(StatusModel):
    """An evaluation run of this version (written by the EvalJob controller)."""

    eval_job: str = Field(max_length=NAME_MAX, description="The EvalJob.")
    eval_job_uid: str | None = Field(
        default=None,
        max_length=64,
        description="The EvalJob's uid: a job made again under the same name starts its runs at 1 again.",
    )
    run_name: str = Field(max_length=NAME_MAX, description="Its run.")
    suite: str = Field(max_length=32, description="The suite.")
    completed_time: datetime | None = Field(default=None, description="When the run ended.")
    results: dict[str, float] | None = Field(default=None, max_length=64, description="Headline scores.")
    results_uri: str | None = Field(default=None, max_length=URI_MAX, description="Full results.")


class ModelVersion(StatusModel):
    """A version of the model: a folder in the model's storage (or a run that will write one)."""

    index: int = Field(ge=0, description="Position, oldest first; stable once given.")
    name: str = Field(max_length=NAME_MAX, description="Version id, e.g. ft_Llama-3.1-8B_20250508124054.")
    status: VersionStatus = Field(
        description="created (files incomplete), uploading (manifest not yet written), training, ready, "
        "deployed or failed."
    )
    ready: bool = Field(
        default=False,
        description="All files present and valid (its manifest, when it has one, is written last).",
    )
    tags: ReadinessTags | None = Field(default=None, description="Readiness tags.")
    size_bytes: int = Field(default=0, ge=0, description="Total size of the files.")
    created_time: datetime | None = Field(default=None, description="When the version was created.")
    file_count: int | None = Field(default=None, ge=0, description="Number of files; unset until scanned.")
    files: list[ModelFile] | None = Field(
        default=None, max_length=FILES_INLINE_MAX, description="The first files of the version, by name."
    )
    files_listing: str | None = Field(
        default=None,
        max_length=URI_MAX,
        description="Where the full file listing is (when files is partial).",
    )
    missing: list[Annotated[str, StringConstraints(max_length=1024)]] | None = Field(
        default=None, max_length=MISSING_MAX, description="Files a ready version still needs."
    )
    message: str | None = Field(
        default=None, max_length=MESSAGE_MAX, description="Why the version is not ready."
    )
    base_model: str | None = Field(default=None, max_length=URI_MAX, description="Base model of an adapter.")
    artifacts: dict[str, Annotated[str, StringConstraints(max_length=256)]] | None = Field(
        default=None,
        max_length=4,
        description="Kind of artifact (model, adapter) -> its folder in the version ('' for the root).",
    )
    pipeline: str | None = Field(
        default=None, max_length=NAME_MAX, description="FineTunePipeline that made it."
    )
    run: str | None = Field(default=None, max_length=NAME_MAX, description="The run that made it.")
    scanned_time: datetime | None = Field(default=None, description="When its files were last examined.")
    listing_digest: str | None = Field(
        default=None,
        max_length=64,
        description="Digest of the file listing last judged: an unchanged version is not read again.",
    )
    promoted: bool | None = Field(
        default=None, description="A pipeline's evaluation gate promoted it: every threshold held."
    )
    evaluations: list[VersionEvaluation] | None = Field(
        default=None, max_length=EVALUATIONS_MAX, description="The latest evaluation runs, newest last."
    )


class ShareStatus(StatusModel):
    """A share as it is granted: the Role and RoleBinding that carry it."""

    email: str = Field(max_length=254, description="The user's e-mail.")
    tenant: str = Field(max_length=63, description="The user's tenant.")
    role: Literal["viewer", "editor", "owner"] = Field(description="viewer, editor or owner.")
    user: str = Field(max_length=320, description="The Kubernetes user name bound.")
    role_name: str = Field(max_length=NAME_MAX, description="The Role and RoleBinding of this share.")
    invited_time: datetime | None = Field(default=None, description="When the share was first granted.")


class PrivateModelStatus(StatusModel):
    """What the operator observed in the model's storage."""

    observed_generation: int | None = Field(default=None, description="metadata.generation last reconciled.")
    conditions: Conditions | None = Field(
        default=None,
        description="Ready (a version is usable), StorageReachable, IPAllowList, Deleting, InUse.",
    )
    phase: str | None = Field(default=None, max_length=64, description="Summary for display only.")
    latest_version: str | None = Field(default=None, max_length=NAME_MAX, description="Newest ready version.")
    version_count: int = Field(default=0, ge=0, description="Number of versions.")
    ready_version_count: int = Field(default=0, ge=0, description="Number of ready versions.")
    storage_bytes: int = Field(default=0, ge=0, description="Total size of all versions.")
    storage_size: str | None = Field(
        default=None, max_length=16, description="storageBytes for people, e.g. 1.5Gi."
    )
    last_scan_time: datetime | None = Field(default=None, description="When the storage was last scanned.")
    scan_failures: int = Field(default=0, ge=0, description="Failed scans in a row (the resync backs off).")
    observed_rescan: str | None = Field(
        default=None, max_length=253, description="Value of the kaizen.dev/rescan annotation last acted upon."
    )
    versions: list[ModelVersion] | None = Field(
        default=None,
        max_length=VERSIONS_MAX,
        description="Versions, oldest first (the newest by index when more; the oldest are dropped).",
    )
    last_version_index: int | None = Field(
        default=None, ge=0, description="Highest index ever given to a version: a new one gets the next."
    )
    dropped_created_time: datetime | None = Field(
        default=None,
        description="Creation time of the newest version dropped beyond the bound on versions: one not "
        "listed and created no later stays out instead of coming back as new.",
    )
    shares: list[ShareStatus] | None = Field(default=None, max_length=100, description="Granted shares.")
