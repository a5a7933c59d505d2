"""A pipeline's spec → the run configuration the runner reads, and what its pods must mount.

Pure: the caller passes the pipeline, the catalog and the PrivateModels it read. Every reference
becomes a location the runner can open inside the pod:
- a catalog entry → its mirror (S3 prefix or PVC folder) when set, else `hf://<hub id>`;
- a PrivateModel version → its folder in the model's storage (`<storage>/<version>`), only when the
  registry marks that version ready (`registry.usable.ready_version`); the runner finds the weights
  of a runner-made version under its `model/` and checks the whole folder against its manifest;
- a PVC path → a volume mounted under `VOLUMES_DIR/<claim>` and the path inside it;
- an S3 location → `s3://bucket/key` plus the connection's name: its Secret is mounted read-only
  under `$KAIZEN_CONNECTIONS_DIR/<name>/` (one file per key, what `kaizen_runner.train.connections`
  reads). Credentials never enter the configuration itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kaizen_api.common import Dataset, OutputStorage, PvcLocation, S3Location
from kaizen_api.finetune import FineTunePipelineSpec
from kaizen_api.privatemodel import ModelVersion
from kaizen_api.runconfig import ProgressTarget, RunDataset, RunLocation, TrainRunConfig
from pydantic import ValidationError

from kaizen_operator.admission import validation_message
from kaizen_operator.catalog import Catalog, CatalogEntry
from kaizen_operator.naming import ChildNames, fit_label, run_object_name, short_hash, slug
from kaizen_operator.registry.usable import ModelNotReady, ready_version
from kaizen_operator.settings import OperatorSettings

CONNECTIONS_DIR = "/var/run/kaizen/connections"
VOLUMES_DIR = "/var/run/kaizen/volumes"
CONFIG_DIR = "/etc/kaizen"
CONFIG_FILE = "run.json"
IMAGE_FORMATS = frozenset({"sharegpt_image"})
_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([KMBT])$")
_SIZE_FACTOR = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


class ResolveError(Exception):
    """The spec cannot become a run; `reason` is the condition reason (UnknownModel, ModelNotReady, …)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ModelFacts:
    """What is known about the base model: its name for run names, modality and size (None: unknown)."""

    name: str
    vision: bool | None = None
    parameters: int | None = None
    moe: bool = False


@dataclass
class Mounts:
    """Volumes and mounts collected while resolving; one volume per claim or connection."""

    claims: dict[str, bool] = field(default_factory=dict)  # claim → read-only
    connections: set[str] = field(default_factory=set)

    def claim(self, location: PvcLocation, *, writable: bool = False) -> str:
        self.claims[location.claim_name] = self.claims.get(location.claim_name, True) and not writable
        path = location.path.strip("/")
        root = f"{VOLUMES_DIR}/{location.claim_name}"
        return f"{root}/{path}" if path else root

    def s3(self, location: S3Location) -> RunLocation:
        self.connections.add(location.connection.name)
        key = location.key.strip("/")
        return RunLocation(uri=f"s3://{location.bucket}/{key}", connection=location.connection.name)


def volume_name(kind: str, name: str) -> str:
    """A DNS-1123 label for a pod volume, unique per source (a claim name may have 253 characters)."""
    return fit_label(f"{kind}-{slug(name)}", short_hash(kind, name, length=5), 63)


@dataclass(frozen=True)
class ResolvedRun:
    """A run ready to be built: its configuration, names and what its pods mount."""

    config: TrainRunConfig
    spec: FineTunePipelineSpec
    namespace: str
    pipeline_name: str
    names: ChildNames
    model: ModelFacts
    volumes: tuple[dict[str, Any], ...]
    volume_mounts: tuple[dict[str, Any], ...]
    connections: tuple[str, ...]

    @property
    def config_json(self) -> str:
        return self.config.model_dump_json(by_alias=True, exclude_none=True)

    @property
    def nodes(self) -> int:
        return self.spec.resources.nodes

    @property
    def gpus_per_node(self) -> int:
        return self.spec.resources.gpus_per_node


def parse_spec(pipeline: Mapping[str, Any]) -> FineTunePipelineSpec:
    try:
        return FineTunePipelineSpec.model_validate(pipeline.get("spec") or {})
    except ValidationError as err:
        raise ResolveError("InvalidSpec", validation_message(err)) from None


def _size(text: str | None) -> int | None:
    match = _SIZE.match(text or "")
    return int(float(match.group(1)) * _SIZE_FACTOR[match.group(2)]) if match else None


def registry_version(model: Mapping[str, Any], wanted: str | None) -> ModelVersion:
    """The named version, or the newest ready one; ModelNotReady unless the registry says it is ready."""
    name = model["metadata"]["name"]
    try:
        return ready_version(model.get("status") or {}, wanted)
    except ModelNotReady as err:
        raise ResolveError("ModelNotReady", f"PrivateModel {name}: {err}") from None
    except ValidationError as err:
        raise ResolveError(
            "ModelNotReady", f"PrivateModel {name}: its status cannot be read: {validation_message(err)}"
        ) from None


def version_artifacts(version: ModelVersion) -> dict[str, str]:
    """Kind (model, adapter) → its folder in the version ('' for the root), as the registry recorded it.
    A version recorded without them is judged by its inline file list, and its folder is the root (the
    runner looks under `model/` and `adapter/` itself)."""
    if version.artifacts:
        return dict(version.artifacts)
    files = {f.name for f in version.files or []}
    if {"config.json", "model/config.json"} & files or "adapter/adapter_config.json" not in files:
        return {"model": ""}
    return {"adapter": ""}


def version_folder(version: ModelVersion, folder: str = "") -> str:
    """The path of a folder of the version, relative to the model's storage."""
    return "/".join(p for p in (version.name, folder.strip("/")) if p)


def storage_location(model: Mapping[str, Any], mounts: Mounts, sub: str, *, writable: bool) -> RunLocation:
    storage = OutputStorage.model_validate((model.get("spec") or {}).get("storage") or {})
    if storage.s3 is not None:
        key = "/".join(p for p in (storage.s3.key.strip("/"), sub) if p)
        return mounts.s3(storage.s3.model_copy(update={"key": key}))
    assert storage.pvc is not None
    path = "/".join(p for p in (storage.pvc.path.strip("/"), sub) if p)
    return RunLocation(uri=mounts.claim(storage.pvc.model_copy(update={"path": path}), writable=writable))


def require_private_model(
    private_models: Mapping[str, Mapping[str, Any]], name: str, reason: str, role: str
) -> Mapping[str, Any]:
    model = private_models.get(name)
    if model is None:
        raise ResolveError(reason, f"{role} PrivateModel {name} does not exist in this namespace")
    return model


def catalog_entry(catalog: Catalog, name: str) -> CatalogEntry:
    entry = catalog.get(name)
    if entry is None:
        raise ResolveError("UnknownModel", f"model catalog has no entry {name!r}")
    return entry


def _hub_entry(catalog: Catalog, hub_id: str) -> CatalogEntry | None:
    return next((e for e in catalog if e.hub_id and e.hub_id.lower() == hub_id.lower()), None)


def _facts(entry: CatalogEntry) -> ModelFacts:
    return ModelFacts(entry.name, entry.vision, entry.parameters, entry.moe)


def _base_model(
    spec: FineTunePipelineSpec,
    catalog: Catalog,
    private_models: Mapping[str, Mapping[str, Any]],
    mounts: Mounts,
    s3_connection: str | None = None,
) -> tuple[RunLocation, ModelFacts]:
    """The base model's location; an s3:// URI is read through `s3_connection` (the output's)."""
    ref = spec.base_model
    if ref.catalog is not None:
        entry = catalog_entry(catalog, ref.catalog)
        if entry.mirror is not None and entry.mirror.s3 is not None:
            return mounts.s3(entry.mirror.s3), _facts(entry)
        if entry.mirror is not None and entry.mirror.pvc is not None:
            return RunLocation(uri=mounts.claim(entry.mirror.pvc)), _facts(entry)
        return RunLocation(uri=f"hf://{entry.hub_id}"), _facts(entry)
    if ref.private_model is not None:
        model = require_private_model(private_models, ref.private_model.name, "UnknownModel", "base model")
        version = registry_version(model, ref.private_model.version)
        # The version root, not its `model/` artifact: the runner verifies the whole version against its
        # manifest and then loads `model/` (or the root); an adapter-only version it refuses, naming why.
        location = storage_location(model, mounts, version_folder(version), writable=False)
        return location, private_facts(model, version, catalog)
    assert ref.uri is not None
    scheme, _, rest = ref.uri.partition("://")
    if scheme == "hf":
        hub = _hub_entry(catalog, rest)
        facts = _facts(hub) if hub else ModelFacts(_last_segment(rest))
        return RunLocation(uri=ref.uri), facts
    if scheme == "pvc":
        claim, _, path = rest.partition("/")
        location = RunLocation(uri=mounts.claim(PvcLocation(claim_name=claim, path=path)))
        return location, ModelFacts(_last_segment(path) or claim)
    if scheme == "s3" and s3_connection is not None:
        mounts.connections.add(s3_connection)
        return RunLocation(uri=ref.uri, connection=s3_connection), ModelFacts(_last_segment(rest))
    raise ResolveError(
        "StorageNotSupported",
        f"baseModel.uri {ref.uri}: an s3:// URI is read with the output PrivateModel's S3 connection, and "
        "this pipeline's output is not on S3; register the model as a PrivateModel version instead",
    )


def _last_segment(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def private_facts(model: Mapping[str, Any], version: ModelVersion, catalog: Catalog) -> ModelFacts:
    spec = model.get("spec") or {}
    tags = version.tags
    entry = catalog.get(spec["baseModel"]) if spec.get("baseModel") else None
    vision = {"VLM": True, "LLM": False}.get((tags.type if tags else None) or "")
    if vision is None and entry is not None:
        vision = entry.vision
    parameters = (
        _size(spec.get("modelSize"))
        or _size(tags.size if tags else None)
        or (entry.parameters if entry else None)
    )
    return ModelFacts(model["metadata"]["name"], vision, parameters, bool(entry and entry.moe))


def base_model_facts(
    pipeline: Mapping[str, Any], catalog: Catalog, private_models: Mapping[str, Mapping[str, Any]]
) -> ModelFacts:
    """The base model's name (for `run_display_name`), modality and size, before a run is named."""
    spec = parse_spec(pipeline)
    return _base_model(spec, catalog, private_models, Mounts(), _output_connection(spec, private_models))[1]


def spec_model_name(spec: FineTunePipelineSpec) -> str:
    """The base model's name as the spec gives it, before (or without) resolving it: names a firing
    skipped because the model cannot be resolved."""
    ref = spec.base_model
    if ref.catalog is not None:
        return ref.catalog
    if ref.private_model is not None:
        return ref.private_model.name
    return _last_segment((ref.uri or "").partition("://")[2])


def _output_connection(
    spec: FineTunePipelineSpec, private_models: Mapping[str, Mapping[str, Any]]
) -> str | None:
    target = private_models.get(spec.output.private_model)
    storage = ((target or {}).get("spec") or {}).get("storage") or {}
    return (storage.get("s3") or {}).get("connection", {}).get("name")


def run_dataset(dataset: Dataset, mounts: Mounts) -> RunDataset:
    if dataset.s3 is not None:
        return RunDataset(**mounts.s3(dataset.s3).model_dump(), format=dataset.format)
    if dataset.pvc is not None:
        return RunDataset(uri=mounts.claim(dataset.pvc), format=dataset.format)
    assert dataset.url is not None
    return RunDataset(uri=dataset.url, format=dataset.format)


def mount_volumes(mounts: Mounts) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes, volume_mounts = [], []
    for claim, read_only in sorted(mounts.claims.items()):
        name = volume_name("pvc", claim)
        volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}})
        volume_mounts.append({"name": name, "mountPath": f"{VOLUMES_DIR}/{claim}", "readOnly": read_only})
    for secret in sorted(mounts.connections):
        name = volume_name("conn", secret)
        volumes.append({"name": name, "secret": {"secretName": secret, "defaultMode": 0o440}})
        volume_mounts.append({"name": name, "mountPath": f"{CONNECTIONS_DIR}/{secret}", "readOnly": True})
    return volumes, volume_mounts


def resolve_train_run(
    pipeline: Mapping[str, Any],
    run_display_name: str,
    catalog: Catalog,
    private_models: Mapping[str, Mapping[str, Any]],
    settings: OperatorSettings,
) -> ResolvedRun:
    """Resolve one run of `pipeline` (a FineTunePipeline object) named `run_display_name`."""
    meta = pipeline["metadata"]
    spec = parse_spec(pipeline)
    mounts = Mounts()
    target = require_private_model(private_models, spec.output.private_model, "OutputModelNotFound", "output")
    output = storage_location(target, mounts, "", writable=True)
    base, model = _base_model(spec, catalog, private_models, mounts, output.connection)
    if spec.dataset.format in IMAGE_FORMATS and model.vision is False:
        raise ResolveError(
            "ModalityMismatch",
            f"dataset format {spec.dataset.format} needs a vision-language model; {model.name} is text-only",
        )
    object_name = run_object_name(meta["name"], run_display_name)
    config = TrainRunConfig(
        run_name=run_display_name,
        trainer=spec.trainer,
        base_model=base,
        base_model_name=model.name,
        dataset=run_dataset(spec.dataset, mounts),
        validation_dataset=run_dataset(spec.validation_dataset, mounts) if spec.validation_dataset else None,
        hyperparameters=spec.hyperparameters,
        extended_hyperparameters=spec.extended_hyperparameters,
        output=output,
        progress=ProgressTarget(
            url=settings.run_progress_url(meta["namespace"], object_name),
            interval_seconds=settings.progress_interval_seconds,
        ),
    )
    volumes, volume_mounts = mount_volumes(mounts)
    return ResolvedRun(
        config=config,
        spec=spec,
        namespace=meta["namespace"],
        pipeline_name=meta["name"],
        names=ChildNames.of(object_name),
        model=model,
        volumes=tuple(volumes),
        volume_mounts=tuple(volume_mounts),
        connections=tuple(sorted(mounts.connections)),
    )
