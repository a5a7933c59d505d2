"""Building blocks shared by every Kaizen API model.

Each cross-field rule is declared once, as a `Rule` that carries both the CEL expression the API
server enforces at admission and the Python predicate the operator and runner enforce when they
read the same object. Declaring them side by side keeps the two from drifting; the invalid-manifest
tests run every case through both.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler, model_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

GROUP = "kaizen.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Bounds that keep CEL cost estimates finite and status objects small.
NAME_MAX = 253
URI_MAX = 2048
LIST_MAX = 64


@dataclass(frozen=True)
class Rule:
    """A validation rule of one object, enforced by CEL at admission and by `check` in Python.

    `check` receives the validated model and returns True when the object is valid; transition rules
    (those that read `oldSelf`) have no Python side and leave it None.
    """

    cel: str
    message: str
    field_path: str | None = None
    check: Callable[[Any], bool] | None = None
    reason: str | None = None

    def to_schema(self) -> dict[str, str]:
        out = {"rule": self.cel, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        if self.reason:
            out["reason"] = self.reason
        return out


def matches(pattern: str, value: str) -> bool:
    """CEL's `matches` (RE2) for a rule's Python half: `$` ends the text, where Python's `$` also matches
    before a final newline. Rule patterns spell their classes out in ASCII ([0-9], not \\d), which both
    engines read alike, and hold no literal `$`."""
    return re.search(pattern.replace("$", r"\Z"), value) is not None


def immutable(camel: str) -> Rule:
    """A transition rule: field `camel` (manifest name) may not be set, unset or changed after creation."""
    both_unset_or_equal = f"(!has(self.{camel}) || self.{camel} == oldSelf.{camel})"
    return Rule(
        cel=f"has(self.{camel}) == has(oldSelf.{camel}) && {both_unset_or_equal}",
        message=f"{camel} is immutable",
        field_path=f".{camel}",
        reason="FieldValueForbidden",
    )


class KaizenModel(BaseModel):
    """Base of every spec/status model: camelCase in manifests, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=False,
        validate_default=True,
    )

    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> KaizenModel:
        for rule in type(self).rules:
            if rule.check is not None and not rule.check(self):
                field = (rule.field_path or "").lstrip(".")
                raise ValueError(
                    rule.message if rule.message.startswith(field) else f"{field}: {rule.message}"
                )
        return self

    @classmethod
    def __get_pydantic_json_schema__(cls, core: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """Adds the CEL rules, and a default for nested objects built by a default factory, so the API
        server fills them in too (it only defaults inside objects that exist). The default is spelled
        out in full because the API server checks it against the object's CEL rules as written."""
        schema = handler.resolve_ref_schema(handler(core))
        if cls.rules:
            schema["x-kubernetes-validations"] = [rule.to_schema() for rule in cls.rules]
        for name, info in cls.model_fields.items():
            factory = info.default_factory
            if factory is None:
                continue
            value = factory()  # type: ignore[call-arg]
            prop = schema["properties"][info.alias or name]
            prop["default"] = value.to_manifest() if isinstance(value, KaizenModel) else value
        return schema

    def to_manifest(self) -> dict[str, Any]:
        """The manifest form: camelCase keys, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class StatusModel(KaizenModel):
    """Status is written by the operator and read back leniently (older operators, extra fields)."""

    model_config = ConfigDict(extra="ignore")
