"""An EvalJob's spec → the run configuration `kaizen-runner eval` reads, and what its pod mounts.

Pure, like `resolve.py` (whose location helpers it shares: one way to turn a catalog entry, a
registry version, a PVC path or an S3 object into a location a pod opens):
- a catalog entry → its mirror or hub id, with its modality, size and instruction tuning;
- a PrivateModel version → its folder; a version holding only a LoRA adapter (its recorded
  `artifacts` name an adapter and no model; without them, its files list `adapter/adapter_config.json`
  and no full weights) → the model's base (a catalog entry) plus the adapter's folder;
- a FineTunePipeline run → the version it published in the pipeline's output PrivateModel;
- an endpoint → its URL, with the API key from the Secret as an environment variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kaizen_api.evalconfig import EvalEndpoint, EvalRunConfig, EvalRunModel
from kaizen_api.evaljob import EvalJobSpec
from kaizen_api.runconfig import ProgressTarget, RunLocation
from pydantic import ValidationError

from kaizen_operator.admission import validation_message
from kaizen_operator.catalog import Catalog, CatalogEntry
from kaizen_operator.naming import ChildNames
from kaizen_operator.resolve import (
    Mounts,
    ResolveError,
    catalog_entry,
    mount_volumes,
    private_facts,
    registry_version,
    require_private_model,
    run_dataset,
    storage_location,
    version_artifacts,
    version_folder,
)
from kaizen_operator.settings import OperatorSettings

API_KEY_ENV = "OPENAI_API_KEY"


@dataclass(frozen=True)
class ResolvedEval:
    """An evaluation run ready to be built."""

    config: EvalRunConfig
    spec: EvalJobSpec
    namespace: str
    job_name: str  # the EvalJob object's name
    names: ChildNames
    volumes: tuple[dict[str, Any], ...]
    volume_mounts: tuple[dict[str, Any], ...]
    api_key_secret: str | None  # Secret whose OPENAI_API_KEY the pod gets (endpoints)
    private_model: tuple[str, str] | None  # (PrivateModel, version) evaluated, for the registry

    @property
    def config_json(self) -> str:
        return self.config.model_dump_json(by_alias=True, exclude_none=True)


def parse_eval_spec(job: Mapping[str, Any]) -> EvalJobSpec:
    try:
        return EvalJobSpec.model_validate(job.get("spec") or {})
    except ValidationError as err:
        raise ResolveError("InvalidSpec", validation_message(err)) from None


def _entry_model(entry: CatalogEntry, mounts: Mounts) -> EvalRunModel:
    if entry.mirror is not None and entry.mirror.s3 is not None:
        location = mounts.s3(entry.mirror.s3)
    elif entry.mirror is not None and entry.mirror.pvc is not None:
        location = RunLocation(uri=mounts.claim(entry.mirror.pvc))
    else:
        location = RunLocation(uri=f"hf://{entry.hub_id}")
    return EvalRunModel(
        name=entry.name,
        location=location,
        modality="vision-language" if entry.modality == "vision" else "text",
        parameters=entry.parameters,
        instruction_tuned=entry.instruction_tuned,
    )


def _version_model(
    model: Mapping[str, Any], wanted: str | None, catalog: Catalog, mounts: Mounts
) -> tuple[EvalRunModel, str]:
    version = registry_version(model, wanted)
    facts = private_facts(model, version, catalog)
    base_name = (model.get("spec") or {}).get("baseModel")
    base = catalog.get(base_name) if base_name else None
    tuned = version.tags.instruction_tuned if version.tags else None
    if tuned is None and base is not None:
        tuned = base.instruction_tuned
    modality = None if facts.vision is None else ("vision-language" if facts.vision else "text")
    name = f"{model['metadata']['name']}/{version.name}"
    common: dict[str, Any] = {
        "name": name,
        "modality": modality,
        "parameters": facts.parameters,
        "instruction_tuned": tuned,
    }
    artifacts = version_artifacts(version)
    if "model" in artifacts or "adapter" not in artifacts:
        # The version root: the runner verifies it against its manifest and loads `model/` (or the root).
        folder = storage_location(model, mounts, version_folder(version), writable=False)
        return EvalRunModel(location=folder, **common), version.name
    if base is None:
        raise ResolveError(
            "UnknownModel",
            f"version {version.name} of PrivateModel {model['metadata']['name']} is a LoRA adapter and "
            f"the model's baseModel ({base_name or 'unset'}) is not a catalog entry to apply it on",
        )
    # Only the adapter's folder is staged (the runner finds adapter_config.json there or under adapter/).
    adapter = storage_location(model, mounts, version_folder(version, artifacts["adapter"]), writable=False)
    on_base = _entry_model(base, mounts)
    return EvalRunModel(location=on_base.location, adapter=adapter, **common), version.name


def _pipeline_run_version(pipeline: Mapping[str, Any] | None, name: str, run: str | None) -> tuple[str, str]:
    """(output PrivateModel, version) of a pipeline's run: the named one, else the newest that succeeded."""
    if pipeline is None:
        raise ResolveError("UnknownModel", f"FineTunePipeline {name} does not exist in this namespace")
    runs = (pipeline.get("status") or {}).get("runs") or []
    done = [r for r in runs if r.get("phase") == "Succeeded" and r.get("outputVersion")]
    chosen = next((r for r in done if r.get("name") == run), None) if run else (done[0] if done else None)
    if chosen is None:
        which = f"run {run}" if run else "succeeded run"
        raise ResolveError(
            "ModelNotReady", f"FineTunePipeline {name} has no {which} with a published version"
        )
    output = (pipeline.get("spec") or {}).get("output", {}).get("privateModel")
    return output, chosen["outputVersion"]


def _model(
    spec: EvalJobSpec,
    catalog: Catalog,
    objects: Mapping[str, Mapping[str, Any]],
    mounts: Mounts,
) -> tuple[EvalRunModel | None, str | None, tuple[str, str] | None]:
    """The model block, the endpoint's key Secret, and the (PrivateModel, version) evaluated."""
    ref = spec.model
    if ref is None:
        return None, None, None
    if ref.catalog is not None:
        return _entry_model(catalog_entry(catalog, ref.catalog), mounts), None, None
    if ref.endpoint is not None:
        secret = ref.endpoint.api_key_secret.name if ref.endpoint.api_key_secret else None
        entry = catalog.get(ref.endpoint.model)
        endpoint = EvalEndpoint(
            base_url=ref.endpoint.base_url, model=ref.endpoint.model, api_key_env=API_KEY_ENV
        )
        model = EvalRunModel(
            name=ref.endpoint.model,
            endpoint=endpoint,
            modality="text" if entry is None or entry.modality == "text" else "vision-language",
            parameters=entry.parameters if entry else None,
            instruction_tuned=entry.instruction_tuned if entry else True,  # a chat endpoint serves chat
        )
        return model, secret, None
    if ref.pipeline_run is not None:
        pipeline = objects.get(f"FineTunePipeline/{ref.pipeline_run.pipeline}")
        model_name, version = _pipeline_run_version(pipeline, ref.pipeline_run.pipeline, ref.pipeline_run.run)
    elif ref.private_model is not None:
        model_name, version = ref.private_model.name, ref.private_model.version  # type: ignore[assignment]
    else:
        raise ResolveError(
            "StorageNotSupported", "model.uri is not supported for evaluation; use a PrivateModel"
        )
    models = {k.split("/", 1)[1]: v for k, v in objects.items() if k.startswith("PrivateModel/")}
    registered = require_private_model(models, model_name, "UnknownModel", "evaluated")
    resolved, version_name = _version_model(registered, version, catalog, mounts)
    return resolved, None, (model_name, version_name)


def resolve_eval_run(
    job: Mapping[str, Any],
    run_name: str,
    run_object_name: str,
    catalog: Catalog,
    objects: Mapping[str, Mapping[str, Any]],
    settings: OperatorSettings,
) -> ResolvedEval:
    """Resolve one run of an EvalJob; `objects` holds the PrivateModels and FineTunePipelines it names,
    keyed `Kind/name`, and the operator's staged-data location under `Settings/stagedData`."""
    meta = job["metadata"]
    spec = parse_eval_spec(job)
    mounts = Mounts()
    model, secret, evaluated = _model(spec, catalog, objects, mounts)
    staged = spec.staged_data
    staged_location = None
    if staged is not None:
        staged_location = (
            mounts.s3(staged.s3) if staged.s3 is not None else RunLocation(uri=mounts.claim(staged.pvc))  # type: ignore[arg-type]
        )
    output = None
    if spec.output is not None:
        output = mounts.s3(spec.output.s3) if spec.output.s3 else None
        if spec.output.pvc is not None:
            output = RunLocation(uri=mounts.claim(spec.output.pvc, writable=True))
    predictions = None
    if spec.predictions is not None:
        predictions = RunLocation(
            **run_dataset(_as_dataset(spec.predictions), mounts).model_dump(exclude={"format"})
        )
    progress_url = f"{settings.progress_url.rstrip('/')}/evalruns/{meta['namespace']}/{run_object_name}"
    config = EvalRunConfig(
        run_name=run_name,
        job_name=spec.display_name,
        suite=spec.suite,
        tasks=spec.tasks,
        model=model,
        dataset=run_dataset(spec.dataset, mounts) if spec.dataset else None,
        predictions=predictions,
        metrics=spec.metrics,
        parameters=spec.parameters,
        staged_data=staged_location,
        allow_code_execution=spec.allow_code_execution,
        output=output,
        progress=ProgressTarget(url=progress_url),
    )
    volumes, volume_mounts = mount_volumes(mounts)
    return ResolvedEval(
        config=config,
        spec=spec,
        namespace=meta["namespace"],
        job_name=meta["name"],
        names=ChildNames.of(run_object_name),
        volumes=tuple(volumes),
        volume_mounts=tuple(volume_mounts),
        api_key_secret=secret,
        private_model=evaluated,
    )


def _as_dataset(location: Any) -> Any:
    """A predictions Location read as a dataset location (the format is irrelevant there)."""
    from kaizen_api.common import Dataset

    return Dataset(**location.model_dump(), format="alpaca")
