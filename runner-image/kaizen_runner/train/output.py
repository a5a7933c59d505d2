"""The model version a run produces, and the rule that makes it trustworthy: the manifest comes last.

Layout of a version folder `<output>/<run_name>/`:
  adapter/              LoRA adapter (adapter_config.json, adapter_model.safetensors) and tokenizer
  model/                full weights and tokenizer: full fine-tuning, or LoRA with merge_adapter
  logs/                 TensorBoard event files
  training_report.json  configuration, data reports, final metrics, log history, versions
  loss_curve.png        train (and eval) loss per step
  manifest.json         every other file with size and sha256, written after all of them

A reader that finds manifest.json knows every file it lists is in place; a version without it is
incomplete and is never reported ready. While the files go up, the registry's upload marker
(`.kaizen-uploading`, written first and removed after the manifest) tells a scan that a complete-looking
adapter/ or model/ folder is not yet a version.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kaizen_api.results import ManifestFile, VersionManifest
from kaizen_operator.registry.readiness import UPLOAD_MARKER
from pydantic import ValidationError

from kaizen_runner.train.store import Store

MANIFEST = "manifest.json"
REPORT = "training_report.json"
LOSS_CURVE = "loss_curve.png"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_manifest(folder: Path, info: VersionManifest) -> VersionManifest:
    """The manifest of a local version folder: `info` plus each file's path, size and sha256."""
    files = [
        ManifestFile(path=rel, size=path.stat().st_size, sha256=sha256_file(path))
        for path in sorted(p for p in folder.rglob("*") if p.is_file())
        if (rel := path.relative_to(folder).as_posix()) != MANIFEST
    ]
    return info.model_copy(update={"created_time": datetime.now(UTC), "files": files})


def manifest_bytes(manifest: VersionManifest) -> bytes:
    return manifest.model_dump_json(by_alias=True, exclude_none=True, indent=2).encode()


def read_manifest(raw: bytes) -> VersionManifest | None:
    """The manifest in `raw`, or None when it is not one (a torn or foreign file)."""
    try:
        return VersionManifest.model_validate_json(raw)
    except ValidationError:
        return None


def publish_version(folder: Path, store: Store, info: VersionManifest) -> VersionManifest:
    """Upload a version: leftovers of an interrupted attempt removed, the upload marker, every file, the
    manifest, then the marker removed."""
    published = published_version(store)
    if published is not None:
        return published  # already published by an earlier attempt of this run
    store.delete("")
    manifest = build_manifest(folder, info)
    store.put_bytes(json.dumps({"version": info.version}).encode(), UPLOAD_MARKER)
    store.put_dir(folder, "", skip=frozenset({MANIFEST}))
    body = manifest_bytes(manifest)
    (folder / MANIFEST).write_bytes(body)
    store.put_bytes(body, MANIFEST)
    store.delete(UPLOAD_MARKER)
    return manifest


def published_version(store: Store) -> VersionManifest | None:
    """The manifest of a version an earlier attempt of this run completed, else None. Its upload marker
    goes: that attempt may have stopped right after writing the manifest."""
    published = complete_manifest(store)
    if published is not None:
        store.delete(UPLOAD_MARKER)
    return published


def complete_manifest(store: Store) -> VersionManifest | None:
    """The manifest, when it exists and every file it lists is stored with the listed size."""
    raw = store.get_bytes(MANIFEST)
    manifest = read_manifest(raw) if raw is not None else None
    if manifest is None:
        return None
    stored = store.list_files()
    return manifest if all(stored.get(entry.path) == entry.size for entry in manifest.files) else None


def is_version_complete(store: Store) -> bool:
    return complete_manifest(store) is not None


def verify_local_version(folder: Path) -> list[str]:
    """Problems of a downloaded version (missing files, size or checksum mismatches); empty when sound."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return [f"{MANIFEST} is missing"]
    manifest = read_manifest(manifest_path.read_bytes())
    if manifest is None:
        return [f"{MANIFEST} is not a version manifest"]
    problems = []
    for entry in manifest.files:
        path = folder / entry.path
        if not path.is_file():
            problems.append(f"{entry.path} is missing")
        elif path.stat().st_size != entry.size or (entry.sha256 and sha256_file(path) != entry.sha256):
            problems.append(f"{entry.path} does not match its checksum")
    return problems


def plot_loss_curve(log_history: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Train and eval loss per step as a PNG (matplotlib's Agg backend: no display needed)."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    evals = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e and "step" in e]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="train_total_loss")
    if evals:
        ax.plot(*zip(*evals, strict=True), marker="o", label="eval_total_loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
