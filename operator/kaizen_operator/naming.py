"""Names of runs and of every child object, deterministic so a restarted operator adopts what exists.

A run has two names (SPEC §3):
- its display name, also the name of the model version it produces (and of its folder):
  `ft_<base model>_<UTC yyyymmddHHMMSS>`, with `_template` appended for template pipelines; at most
  253 characters, so a longer base model name (a PrivateModel's may have 253) is cut and hashed;
- its object name, a DNS-1123 label of at most 52 characters that starts with a letter, used by
  every child (`<run>-config`, `<run>-preflight`, the workload `<run>`, …). 52 leaves room for the
  suffixes Kubernetes adds: Indexed Job pod hostnames `<job>-<index>` and the 11 characters a
  CronJob or Job controller appends to its children, all within 63.

Same inputs, same names: nothing here reads a clock or a random source.

A pipeline is a **template** when it carries the label `kaizen.dev/template: "true"` (a label, not a
spec field, so listing templates is a label selector and marking one changes no spec generation).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kaizen_api.base import NAME_MAX

RUN_NAME_MAX = 52
LABEL_MAX = 63
TEMPLATE_LABEL = "kaizen.dev/template"
TIMESTAMP_FORMAT = "%Y%m%d%H%M%S"
# What `ft_`, `_<timestamp>` and `_template` leave of a display name of NAME_MAX characters.
MODEL_PART_MAX = NAME_MAX - len("ft__") - len("yyyymmddHHMMSS") - len("_template")

_NOT_LABEL = re.compile(r"[^a-z0-9-]+")
_DASHES = re.compile(r"-{2,}")
_DISPLAY_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_TIMESTAMP = re.compile(r"_(\d{14})(?:_|$)")


def is_template(pipeline: dict[str, Any]) -> bool:
    labels = (pipeline.get("metadata") or {}).get("labels") or {}
    return str(labels.get(TEMPLATE_LABEL, "")).lower() == "true"


def run_display_name(base_model_name: str, when: datetime, template: bool = False) -> str:
    """`ft_<base model>_<UTC yyyymmddHHMMSS>[_template]`; a naive `when` is taken as UTC."""
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    base = _DISPLAY_UNSAFE.sub("-", base_model_name.rsplit("/", 1)[-1]).strip("-") or "model"
    if len(base) > MODEL_PART_MAX:  # the hash keeps two long names that share a beginning apart
        base = fit_label(base, short_hash(base, length=8), MODEL_PART_MAX)
    name = f"ft_{base}_{when.strftime(TIMESTAMP_FORMAT)}"
    return f"{name}_template" if template else name


def short_hash(*parts: str, length: int = 6) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:length]


def slug(text: str) -> str:
    """Lower-case letters, digits and single dashes; never empty, never starting with a digit."""
    out = _DASHES.sub("-", _NOT_LABEL.sub("-", text.lower())).strip("-")
    if not out or not out[0].isalpha():
        out = f"r-{out}".rstrip("-")
    return out


def fit_label(prefix: str, suffix: str, limit: int) -> str:
    room = limit - len(suffix) - 1
    return f"{prefix[:room].rstrip('-')}-{suffix}"


def run_object_name(pipeline_name: str, run_display_name: str) -> str:
    """`<pipeline>-<timestamp>-<hash>`: a DNS-1035 label of at most 52 characters.

    The hash covers both inputs, so a truncated pipeline name or a `_template` run never collides.
    """
    stamp = _TIMESTAMP.search(run_display_name)
    digest = short_hash(pipeline_name, run_display_name)
    suffix = f"{stamp.group(1)}-{digest}" if stamp else digest
    return fit_label(slug(pipeline_name), suffix, RUN_NAME_MAX)


def cronjob_name(pipeline_name: str) -> str:
    """The pipeline's CronJob (at most 52 characters: its Jobs get an 11-character suffix)."""
    return fit_label(slug(pipeline_name), f"schedule-{short_hash(pipeline_name, length=5)}", RUN_NAME_MAX)


@dataclass(frozen=True)
class ChildNames:
    """Every object one run owns, named from the run's object name."""

    run: str
    config_map: str
    token_secret: str
    preflight_job: str
    job: str
    service: str

    @classmethod
    def of(cls, run_object_name: str) -> ChildNames:
        if len(run_object_name) > RUN_NAME_MAX:
            raise ValueError(f"run object name {run_object_name!r} is longer than {RUN_NAME_MAX}")
        return cls(
            run=run_object_name,
            config_map=f"{run_object_name}-config",
            token_secret=f"{run_object_name}-token",
            preflight_job=f"{run_object_name}-preflight",
            job=run_object_name,
            service=run_object_name,
        )


def label_value(name: str) -> str:
    """An object name as a label value (at most 63 characters; a longer name is cut and hashed)."""
    if len(name) <= LABEL_MAX:
        return name
    return fit_label(name, short_hash(name, length=8), LABEL_MAX)
