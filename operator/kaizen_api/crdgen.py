"""Generate crds/*.yaml from the API models: `kaizen-crdgen` writes them, `kaizen-crdgen --check` fails
when the committed files are stale. The Helm chart ships the same files (charts/kaizen/crds/, Helm installs
a chart's CRDs from there): both folders are written and checked, byte for byte alike.

Pydantic emits JSON Schema 2020-12; the API server wants a structural OpenAPI v3 schema. The
conversion inlines `$ref`s, turns `Optional[X]` into X, maps numeric `exclusiveMinimum` to the
OpenAPI boolean form, drops titles and `additionalProperties: false`, and insists that every field
has a description (for `kubectl explain`) and every string and list a bound (for CEL cost limits).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from kaizen_api.base import GROUP, VERSION
from kaizen_api.kinds import CATEGORY, KINDS, Kind

Schema = dict[str, Any]
_DROP = {"title", "$defs", "propertyNames"}
# Readable YAML: type and description first, children and rules last.
_KEY_ORDER = {
    "type": -3,
    "description": -2,
    "default": -1,
    "properties": 2,
    "items": 2,
    "required": 3,
    "x-kubernetes-validations": 4,
}


class SchemaError(ValueError):
    """The models produce a schema the API server would reject or could not cost-check."""


def _resolve(node: Schema, defs: dict[str, Schema]) -> Schema:
    """Inline `$ref` / single-element `allOf` and collapse `anyOf [X, null]` into X, keeping siblings."""
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").rsplit("/", 1)[-1]])
        node = {**_resolve(target, defs), **node}
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**_resolve(node.pop("allOf")[0], defs), **node}
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) != 1:
            raise SchemaError(f"union types are not structural: {node['anyOf']}")
        del node["anyOf"]
        node = {**_resolve(branches[0], defs), **node}
        if node.get("default", 0) is None:
            del node["default"]
    return node


def to_structural(node: Schema, defs: dict[str, Schema], path: str) -> Schema:
    """Convert one pydantic schema node (and its children) to a structural OpenAPI v3 node."""
    node = _resolve(node, defs)
    out: Schema = {}
    for key, value in node.items():
        if key in _DROP or (key == "additionalProperties" and value is False):
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "properties":
            out[key] = {name: to_structural(child, defs, f"{path}.{name}") for name, child in value.items()}
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = to_structural(value, defs, f"{path}[*]")
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "integer" if all(isinstance(v, int) for v in out["enum"]) else "string"
    _check(out, path)
    return dict(sorted(out.items(), key=lambda item: _KEY_ORDER.get(item[0], 1)))


def _check(node: Schema, path: str) -> None:
    if "type" not in node:
        raise SchemaError(f"{path}: no type")
    if not path.endswith("[*]") and not node.get("description"):
        raise SchemaError(f"{path}: no description (kubectl explain would show nothing)")
    if node["type"] == "string" and "maxLength" not in node and "enum" not in node and "format" not in node:
        raise SchemaError(f"{path}: string without maxLength")
    if node["type"] == "array" and "maxItems" not in node:
        raise SchemaError(f"{path}: array without maxItems")
    if node["type"] == "number":
        for key in ("minimum", "maximum"):
            if _truncation_misjudges(key, node.get(key), bool(node.get("exclusive" + key.capitalize()))):
                raise SchemaError(
                    f"{path}: the API server checks a whole number against int({key}) = "
                    f"int({node[key]}); put this bound in a Rule"
                )


def _truncation_misjudges(key: str, bound: float | None, exclusive: bool) -> bool:
    """Whether a whole-number value (JSON `0`) is judged wrongly against this bound of a number field:
    the API server compares it with the bound truncated toward zero. That is exact for a whole bound,
    and for a fractional one except where truncation moves it past a whole number the value may be:
    an inclusive minimum above zero admits 0 under `minimum: 1e-5`, an exclusive maximum above zero
    refuses 0 under `maximum: 0.5`, and the mirror cases below zero."""
    if bound is None or float(bound).is_integer():
        return False
    return ((key == "minimum") == (bound > 0)) != exclusive


def model_schema(model: type, path: str) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")  # type: ignore[attr-defined]
    return to_structural(raw, raw.get("$defs", {}), path)


def crd(kind: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    spec = model_schema(kind.spec, "spec")
    status = model_schema(kind.status, "status")
    spec["description"] = (kind.spec.__doc__ or "").strip().splitlines()[0]
    status["description"] = (kind.status.__doc__ or "").strip().splitlines()[0]
    root = {
        "type": "object",
        "description": kind.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "APIVersion of this object (kaizen.dev/v1alpha1).",
            },
            "kind": {"type": "string", "description": f"Kind of this object ({kind.kind})."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name,
            "labels": {"app.kubernetes.io/part-of": "kaizen"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(kind.columns),
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


HEADER = "# Generated by `kaizen-crdgen` from operator/kaizen_api; do not edit by hand.\n"


def render(kind: Kind) -> str:
    return HEADER + yaml.safe_dump(crd(kind), sort_keys=False, width=120, allow_unicode=True)


def file_name(kind: Kind) -> str:
    return f"{GROUP}_{kind.plural}.yaml"


# Every folder that holds the CRDs, relative to the repository root (the working directory).
OUT_DIRS = (Path("crds"), Path("charts/kaizen/crds"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kaizen-crdgen", description="Write the CRDs (crds/, charts/kaizen/crds/) from the API models."
    )
    parser.add_argument(
        "--out",
        type=Path,
        action="append",
        help="output folder, repeatable (default: " + " and ".join(map(str, OUT_DIRS)) + ")",
    )
    parser.add_argument("--check", action="store_true", help="fail when the files differ from the models")
    args = parser.parse_args(argv)
    stale = []
    for out in args.out or OUT_DIRS:
        for kind in KINDS:
            path = out / file_name(kind)
            text = render(kind)
            if args.check:
                if not path.exists() or path.read_text() != text:
                    stale.append(str(path))
            else:
                out.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                print(f"wrote {path}")
    if stale:
        print("stale CRDs (run kaizen-crdgen): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
