"""The model catalog: `catalog.yaml` (shipped) with an administrator's entries merged over it.

Entries are data, not code: adding a model is a YAML edit (or a ConfigMap mounted at the
`catalogPath` setting). An entry with a shipped name is merged over the shipped one field by
field, so `{name: Llama-3.1-8B, mirror: {s3: …}}` adds a mirror and keeps everything else.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml
from kaizen_api.base import KaizenModel, Rule
from kaizen_api.common import PvcLocation, S3Location
from pydantic import Field, ValidationError

from kaizen_operator.settings import merge

SHIPPED = "catalog.yaml"


class CatalogError(ValueError):
    """A catalog file is unreadable or an entry is invalid; the message names the file and entry."""


class ModelMirror(KaizenModel):
    """A copy of the weights inside the cluster's reach, for air-gapped clusters."""

    s3: S3Location | None = Field(default=None, description="An S3 prefix holding the model folder.")
    pvc: PvcLocation | None = Field(default=None, description="A folder on a PersistentVolumeClaim.")

    rules = (
        Rule(
            cel="[has(self.s3), has(self.pvc)].filter(x, x).size() == 1",
            message="exactly one of s3, pvc must be set",
            check=lambda m: (m.s3 is None) != (m.pvc is None),
        ),
    )


class CatalogEntry(KaizenModel):
    """One base model of the catalog."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    family: str = Field(min_length=1, max_length=63)
    hub_id: str | None = Field(default=None, max_length=256, pattern=r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
    mirror: ModelMirror | None = None
    modality: Literal["text", "vision"]
    parameters: int = Field(gt=0, description="Total parameter count.")
    active_parameters: int | None = Field(default=None, gt=0, description="Per-token parameters (MoE).")
    instruction_tuned: bool
    moe: bool
    recommended_gpus: int = Field(ge=1, le=1024)
    aliases: tuple[str, ...] = ()

    rules = (
        Rule(
            cel="has(self.hubId) || has(self.mirror)",
            message="an entry needs a hubId or a mirror",
            check=lambda m: m.hub_id is not None or m.mirror is not None,
        ),
        Rule(
            cel="!has(self.activeParameters) || self.moe",
            message="activeParameters is only for MoE models",
            check=lambda m: m.active_parameters is None or m.moe,
        ),
    )

    @property
    def vision(self) -> bool:
        return self.modality == "vision"

    @property
    def size_label(self) -> str:
        """`8B`, `0.5B`, `671B`: the size the registry's readiness tags show."""
        billions = self.parameters / 1e9
        return f"{billions:.0f}B" if billions >= 10 else f"{billions:.1f}B".replace(".0B", "B")


class Catalog:
    """Entries by name (aliases and a case-insensitive match find them too)."""

    def __init__(self, entries: Mapping[str, CatalogEntry]) -> None:
        self._entries = dict(entries)
        self._lookup: dict[str, CatalogEntry] = {}
        for entry in self._entries.values():
            for key in (entry.name, *entry.aliases):
                self._lookup.setdefault(key.lower(), entry)

    def get(self, name: str) -> CatalogEntry | None:
        return self._entries.get(name) or self._lookup.get(name.lower())

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)


def _raw_entries(text: str, where: str) -> list[dict[str, Any]]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise CatalogError(f"{where}: not YAML: {err}") from None
    models = doc.get("models") if isinstance(doc, dict) else doc
    if models is None:
        return []
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        raise CatalogError(f"{where}: expected `models:` with a list of entries")
    for index, entry in enumerate(models):
        if not isinstance(entry.get("name"), str):
            raise CatalogError(f"{where}: models[{index}] has no name")
    return models


def _validated(raw: dict[str, Any], where: str) -> CatalogEntry:
    try:
        return CatalogEntry.model_validate(raw)
    except ValidationError as err:
        problem = err.errors()[0]
        field = ".".join(str(p) for p in problem["loc"])
        raise CatalogError(f"{where}: entry {raw.get('name')!r}: {field}: {problem['msg']}") from None


def load_catalog(path: Path | str | None = None) -> Catalog:
    """The shipped catalog, with the entries of `path` (a YAML file) merged over it."""
    merged: dict[str, dict[str, Any]] = {}
    sources = [(files("kaizen_operator").joinpath(SHIPPED).read_text(encoding="utf-8"), SHIPPED)]
    if path is not None:
        try:
            sources.append((Path(path).read_text(encoding="utf-8"), str(path)))
        except OSError as err:
            raise CatalogError(f"{path}: cannot read the catalog file: {err}") from None
    origin: dict[str, str] = {}
    for text, where in sources:
        for raw in _raw_entries(text, where):
            name = raw["name"]
            merged[name] = merge(merged.get(name, {}), raw)
            origin[name] = where
    return Catalog({name: _validated(raw, origin[name]) for name, raw in merged.items()})
