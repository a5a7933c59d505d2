"""Is a version usable? One verdict, computed from a file listing and a way to read small files, so the
operator (scanning S3 or a volume) and `kaizen-runner model check` (a local folder) agree exactly.

A version is ready when every folder it ships loads: a model folder has config.json, its weights
(one file, or an index whose every shard exists) and tokenizer files; an adapter folder has
adapter_config.json naming its base and the adapter's weights. A version with a Kaizen manifest
(`manifest.json`, written last) must also hold every file the manifest lists, at the listed size
(and checksum, on request). A version whose upload is still going on is `uploading`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kaizen_api.privatemodel import MESSAGE_MAX, MISSING_MAX, ReadinessTags, VersionStatus
from kaizen_api.results import VersionManifest
from pydantic import ValidationError

from kaizen_operator.registry.params import count_parameters, human_size

MANIFEST = "manifest.json"
REPORT = "training_report.json"
# Written first by `kaizen-runner model upload` and removed after the manifest: an upload in progress.
UPLOAD_MARKER = ".kaizen-uploading"
CONTROL_FILES = frozenset({MANIFEST, UPLOAD_MARKER})
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.txt")
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
_FAMILIES = {
    "llama": "Llama",
    "mllama": "Llama",
    "mistral": "Mistral",
    "mixtral": "Mixtral",
    "qwen2": "Qwen2",
    "qwen2_moe": "Qwen2",
    "qwen3": "Qwen3",
    "qwen3_moe": "Qwen3",
    "qwen2_vl": "Qwen2-VL",
    "qwen2_5_vl": "Qwen2.5-VL",
    "gemma": "Gemma",
    "gemma2": "Gemma",
    "gemma3": "Gemma",
    "deepseek_v3": "DeepSeek",
    "llava": "LLaVA",
}


@dataclass(frozen=True)
class StoredFile:
    """One file of a version, as a listing shows it (path relative to the version folder)."""

    path: str
    size: int
    modified: datetime | None = None


Reader = Callable[[str], bytes | None]
# (base model URI, base model name) -> the base's tags, or None when it cannot be looked up.
BaseTags = Callable[[str | None, str | None], ReadinessTags | None]


@dataclass
class Verdict:
    """The readiness of one version, with what is missing and the tags derived from its files."""

    status: VersionStatus
    missing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tags: ReadinessTags | None = None
    manifest: VersionManifest | None = None
    base_model: str | None = None
    artifacts: dict[str, str] | None = None

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    @property
    def message(self) -> str | None:
        """One line for people: what is missing or wrong, or why the version is not done."""
        if self.status == "uploading":
            return f"upload in progress: {MANIFEST} has not been written yet"
        parts = (
            [f"missing {', '.join(self.missing[:MISSING_MAX])}{_more(self.missing)}"] if self.missing else []
        )
        parts += self.problems[:MISSING_MAX]
        if len(self.problems) > MISSING_MAX:
            parts.append(f"{len(self.problems) - MISSING_MAX} more problem(s)")
        text = "; ".join(parts)
        # Bounded as status.versions[].message is: a manifest that lies about every file must not make
        # the version's entry invalid (and with it the whole scan of the model).
        return (text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 1] + "…") or None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "ready": self.ready,
            "missing": self.missing,
            "problems": self.problems,
            "message": self.message,
            "baseModel": self.base_model,
            "tags": self.tags.to_manifest() if self.tags else None,
        }


def _more(items: list[str]) -> str:
    return f" and {len(items) - MISSING_MAX} more" if len(items) > MISSING_MAX else ""


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _read_json(read: Reader, path: str, problems: list[str]) -> Any | None:
    raw = read(path)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        problems.append(f"{path} is not valid JSON")
        return None


class _Check:
    """Accumulates missing files and problems while the folders of one version are examined."""

    def __init__(self, files: Mapping[str, StoredFile], read: Reader) -> None:
        self.files, self.read = files, read
        self.missing: list[str] = []
        self.problems: list[str] = []

    def has(self, path: str) -> bool:
        return path in self.files

    def any_of(self, folder: str, names: tuple[str, ...], label: str) -> str | None:
        found = next((_join(folder, n) for n in names if self.has(_join(folder, n))), None)
        if found is None:
            self.missing.append(_join(folder, label))
        elif self.files[found].size == 0:
            self.problems.append(f"{found} is empty")
        return found

    def model_folder(self, folder: str) -> dict[str, Any] | None:
        """Config, weights (sharded or not) and tokenizer of a full model; returns the parsed config."""
        config_path = _join(folder, "config.json")
        config = _read_json(self.read, config_path, self.problems) if self.has(config_path) else None
        if not self.has(config_path):
            self.missing.append(config_path)
        elif config is not None and not isinstance(config, dict):
            self.problems.append(f"{config_path} is not a JSON object")
            config = None
        self._weights(folder)
        if not any(self.has(_join(folder, n)) for n in TOKENIZER_FILES) and not (
            self.has(_join(folder, "vocab.json")) and self.has(_join(folder, "merges.txt"))
        ):
            self.missing.append(_join(folder, "tokenizer.json (or tokenizer.model, vocab.json + merges.txt)"))
        if config and isinstance(config.get("vision_config"), dict):
            self.any_of(folder, PROCESSOR_FILES, "processor_config.json (or preprocessor_config.json)")
        return config

    def _weights(self, folder: str) -> None:
        if any(self.has(_join(folder, n)) for n in WEIGHT_FILES):
            self.any_of(folder, WEIGHT_FILES, WEIGHT_FILES[0])
            return
        index_path = next((_join(folder, n) for n in WEIGHT_INDEXES if self.has(_join(folder, n))), None)
        if index_path is None:
            self.missing.append(_join(folder, "model.safetensors (or pytorch_model.bin, or a sharded index)"))
            return
        index = _read_json(self.read, index_path, self.problems)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            self.problems.append(f"{index_path} has no weight_map")
            return
        for shard in sorted({_join(folder, str(name)) for name in weight_map.values()}):
            if not self.has(shard):
                self.missing.append(shard)
            elif self.files[shard].size == 0:  # as for a single weights file: an empty shard cannot load
                self.problems.append(f"{shard} is empty")

    def adapter_folder(self, folder: str, manifest: VersionManifest | None) -> str | None:
        """Adapter config and weights; returns the base model the adapter names."""
        config_path = _join(folder, "adapter_config.json")
        config = _read_json(self.read, config_path, self.problems) if self.has(config_path) else None
        if not self.has(config_path):
            self.missing.append(config_path)
        self.any_of(folder, ADAPTER_WEIGHTS, ADAPTER_WEIGHTS[0])
        base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
        base = base or (manifest.base_model_uri if manifest else None)
        if config is not None and not base:
            self.problems.append(f"{config_path} names no base model (base_model_name_or_path)")
        return str(base) if base else None

    def chat_template(self, folder: str) -> bool:
        if any(self.has(_join(folder, n)) for n in CHAT_TEMPLATE_FILES):
            return True
        path = _join(folder, "tokenizer_config.json")
        config = _read_json(self.read, path, []) if self.has(path) else None
        return isinstance(config, dict) and bool(config.get("chat_template"))


def _artifacts(files: Mapping[str, StoredFile], manifest: VersionManifest | None) -> dict[str, str]:
    """Kind (model, adapter) -> folder: the manifest's word, else the runner's layout, else the root."""
    if manifest is not None and manifest.artifacts:
        return dict(manifest.artifacts)
    markers = {"model": "model/config.json", "adapter": "adapter/adapter_config.json"}
    found = {kind: kind for kind, marker in markers.items() if marker in files}
    if found:
        return found
    return {"adapter": ""} if "adapter_config.json" in files else {"model": ""}


def model_tags(
    config: dict[str, Any], read: Reader, folder: str, check: _Check | None = None
) -> ReadinessTags:
    """Family, type, parameter count and instruction tuning, from config.json and the tokenizer files."""
    model_type = str(config.get("model_type") or "")
    architectures = config.get("architectures") or []
    family = _FAMILIES.get(model_type)
    if family is None and architectures:
        family = str(architectures[0]).split("For", 1)[0] or None
    parameters = count_parameters(config)
    if parameters is None:
        index = next((_read_json(read, _join(folder, n), []) for n in WEIGHT_INDEXES), None)
        total = (index or {}).get("metadata", {}).get("total_parameters") if isinstance(index, dict) else None
        parameters = int(total) if isinstance(total, int) else None
    if parameters is not None and parameters < 0:  # a count from a file is not trusted below zero
        parameters = None
    return ReadinessTags(
        family=family[:63] if family else None,
        type="VLM" if isinstance(config.get("vision_config"), dict) else "LLM",
        parameters=parameters,
        size=human_size(parameters) if parameters is not None else None,
        instruction_tuned=check.chat_template(folder) if check else None,
        adapter=False,
    )


def _adapter_tags(
    check: _Check, folder: str, base: str | None, manifest: VersionManifest | None, base_tags: BaseTags | None
) -> ReadinessTags:
    """An adapter has its base's family, type and size (its own few parameters aside), when the base can
    be looked up; its own chat template says whether it is instruction-tuned."""
    found = base_tags(base, manifest.base_model if manifest else None) if base_tags else None
    update = {"adapter": True, "instruction_tuned": check.chat_template(folder)}
    return (found or ReadinessTags()).model_copy(update=update)


def _check_manifest(check: _Check, manifest: VersionManifest, checksum: Callable[[str], str] | None) -> None:
    for entry in manifest.files:
        stored = check.files.get(entry.path)
        if stored is None:
            check.missing.append(entry.path)
        elif stored.size != entry.size:
            check.problems.append(f"{entry.path} has {stored.size} bytes, the manifest says {entry.size}")
        elif checksum is not None and entry.sha256 and checksum(entry.path) != entry.sha256:
            check.problems.append(f"{entry.path} does not match its sha256 in the manifest")


def assess_version(
    files: Mapping[str, StoredFile],
    read: Reader,
    *,
    checksum: Callable[[str], str] | None = None,
    in_progress: bool = False,
    base_tags: BaseTags | None = None,
) -> Verdict:
    """The verdict on one version folder. `files` maps each path (relative to the folder) to its listing
    entry; `read` returns a small file's bytes (config, index, manifest); `checksum` returns a file's
    sha256 when checksums are wanted; `in_progress` says a run or an upload is known to be writing it;
    `base_tags(uri, name)` looks up the tags of an adapter's base (see registry.bases)."""
    check = _Check(files, read)
    manifest: VersionManifest | None = None
    if MANIFEST in files:
        raw = read(MANIFEST)
        try:
            manifest = VersionManifest.model_validate_json(raw or b"")
        except ValidationError:
            return Verdict("failed", problems=[f"{MANIFEST} is not a Kaizen version manifest"])
    elif in_progress or UPLOAD_MARKER in files or REPORT in files:
        return Verdict("uploading")
    if manifest is not None:
        _check_manifest(check, manifest, checksum)
    tags: ReadinessTags | None = None
    base: str | None = None
    artifacts = _artifacts(files, manifest)
    for kind, folder in sorted(artifacts.items(), key=lambda item: item[0] != "model"):
        if kind == "adapter":
            base = check.adapter_folder(folder, manifest)
            if tags is None:
                tags = _adapter_tags(check, folder, base, manifest, base_tags)
        else:
            config = check.model_folder(folder)
            if config is not None and tags is None:
                tags = model_tags(config, read, folder, check)
    missing = list(dict.fromkeys(check.missing))
    if not missing and not check.problems:
        status: VersionStatus = "ready"
    else:
        status = "failed" if manifest is not None or check.problems else "created"
    return Verdict(status, missing, check.problems, tags, manifest, base, artifacts)
