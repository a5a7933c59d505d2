"""Tags of an adapter's base model, for a LoRA version (the runner's default output), which has no
config.json of its own: the base's config.json where the model's storage connection can read it (an
`s3://` prefix, or on a workstation a folder), else the model catalog's entry (exact, curated
parameter counts) for a catalog or hub base."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from kaizen_api.privatemodel import ReadinessTags
from kaizen_runner.storage import StorageError, parse_s3_url

from kaizen_operator.catalog import Catalog, CatalogEntry, CatalogError, load_catalog
from kaizen_operator.registry.params import human_size
from kaizen_operator.registry.readiness import BaseTags, model_tags
from kaizen_operator.registry.storage import SMALL_FILE_MAX, ModelStorage, S3ModelStorage


@lru_cache(maxsize=1)
def operator_catalog() -> Catalog | None:
    """The catalog the operator resolves base models against (shipped + the administrator's file)."""
    try:
        from kaizen_operator.settings import load_settings

        return load_catalog(load_settings().catalog_path)
    except (CatalogError, ValueError):
        return None


def _config(storage: ModelStorage, uri: str, local_paths: bool) -> dict[str, Any] | None:
    raw: bytes | None = None
    try:
        if uri.startswith("s3://") and isinstance(storage, S3ModelStorage):
            bucket, prefix = parse_s3_url(uri)
            key = f"{prefix.strip('/')}/config.json".lstrip("/")
            raw = storage.objects.get_bytes(bucket, key, max_bytes=SMALL_FILE_MAX)
        elif local_paths and "://" not in uri and Path(uri, "config.json").is_file():
            raw = Path(uri, "config.json").read_bytes()
        config = json.loads(raw) if raw is not None else None
    except (StorageError, OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def _catalog_entry(catalog: Catalog, uri: str | None, name: str | None) -> CatalogEntry | None:
    if name and (entry := catalog.get(name)):
        return entry
    hub_id = uri.removeprefix("hf://") if uri and uri.startswith("hf://") else None
    return next((e for e in catalog if hub_id and e.hub_id == hub_id), None)


def catalog_tags(entry: CatalogEntry) -> ReadinessTags:
    return ReadinessTags(
        family=entry.family,
        type="VLM" if entry.vision else "LLM",
        parameters=entry.parameters,
        size=human_size(entry.parameters),
        instruction_tuned=entry.instruction_tuned,
    )


def base_tags_reader(
    storage: ModelStorage, *, local_paths: bool = False, catalog: Catalog | None
) -> BaseTags:
    """Looks each base up once per scan. The operator never follows local paths (they come from a
    user's file); `kaizen-runner model check` on a workstation does (`local_paths`)."""
    cache: dict[tuple[str | None, str | None], ReadinessTags | None] = {}

    def lookup(uri: str | None, name: str | None) -> ReadinessTags | None:
        if (uri, name) not in cache:
            config = _config(storage, uri, local_paths) if uri else None
            entry = _catalog_entry(catalog, uri, name) if catalog is not None and config is None else None
            found = model_tags(config, lambda path: None, "") if config else None
            cache[uri, name] = found or (catalog_tags(entry) if entry else None)
        return cache[uri, name]

    return lookup
