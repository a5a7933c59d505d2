"""The API models accept every example and reject every invalid case, naming the field; the CRDs in
crds/ are exactly what the models generate."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from kaizen_api import crdgen
from kaizen_api.base import KaizenModel
from kaizen_api.kinds import KINDS
from kaizen_operator.admission import validation_message
from pydantic import Field, ValidationError, create_model

from api.cases import CASES, VALID_VARIANTS
from api.manifests import all_examples

ROOT = Path(__file__).resolve().parents[2]
BY_KIND = {k.kind: k for k in KINDS}


def spec_model(manifest: dict):
    return BY_KIND[manifest["kind"]].spec


@pytest.mark.parametrize(
    "name,manifest",
    [e for e in all_examples() if e[1]["kind"] in BY_KIND],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_example_is_valid(name: str, manifest: dict) -> None:
    spec = spec_model(manifest).model_validate(manifest["spec"])
    # What the model writes back is what the user wrote, plus defaults: nothing is renamed or lost.
    dumped = spec.to_manifest()
    for key in manifest["spec"]:
        assert key in dumped, f"{name}: {key} lost on the way through the model"


def test_examples_cover_every_kind_trainer_and_suite() -> None:
    docs = [doc for _, doc in all_examples()]
    assert {d["kind"] for d in docs} >= set(BY_KIND)
    assert {d["spec"]["trainer"] for d in docs if d["kind"] == "FineTunePipeline"} == {
        "pretraining",
        "sft",
        "dpo",
    }
    suites = {d["spec"]["suite"] for d in docs if d["kind"] == "EvalJob"}
    assert suites == {"standard", "lm-eval-harness", "nejumi-leaderboard3", "vlmevalkit"}
    base_models = [d["spec"]["baseModel"] for d in docs if d["kind"] == "FineTunePipeline"]
    assert any("catalog" in m for m in base_models) and any("privateModel" in m for m in base_models)


def test_enough_invalid_cases() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_models_reject_invalid_case(case) -> None:
    manifest = case.manifest()
    with pytest.raises(ValidationError) as info:
        spec_model(manifest).model_validate(manifest["spec"])
    message = validation_message(info.value)
    last = re.sub(r"\[\d+\]$", "", case.field.rsplit(".", 1)[-1])
    assert last in message, f"{case.id}: {message!r} does not name {last}"


def test_crds_are_up_to_date() -> None:
    outs = [arg for folder in crdgen.OUT_DIRS for arg in ("--out", str(ROOT / folder))]
    assert crdgen.main(["--check", *outs]) == 0, "run `kaizen-crdgen`, commit crds/ and charts/kaizen/crds/"


@pytest.mark.parametrize(
    "bounds,refused",
    [
        ({"ge": 1e-5}, True),  # int(1e-5) == 0: a whole 0 would pass
        ({"lt": 0.5}, True),  # 0 < int(0.5) fails: a whole 0 would be refused
        ({"le": -0.5}, True),
        ({"gt": -0.5}, True),
        ({"le": 0.5}, False),  # truncation judges whole numbers right
        ({"gt": 0.5}, False),
        ({"ge": -0.5}, False),
        ({"lt": -0.5}, False),
        ({"ge": 0, "le": 1}, False),
    ],
)
def test_crdgen_refuses_a_fractional_bound_the_api_server_truncates(bounds: dict, refused: bool) -> None:
    rate = (float, Field(description="A rate.", **bounds))
    model = create_model("Rates", __base__=KaizenModel, __doc__="Rates.", rate=rate)
    if refused:
        with pytest.raises(crdgen.SchemaError, match="spec.rate: .*put this bound in a Rule"):
            crdgen.model_schema(model, "spec")
    else:
        crdgen.model_schema(model, "spec")


def test_every_schema_node_is_described_and_bounded() -> None:
    # crdgen refuses undocumented or unbounded fields; this walks the rendered CRDs to prove it held.
    def walk(node: dict, path: str) -> None:
        if node.get("type") == "string" and not ({"maxLength", "enum", "format"} & node.keys()):
            raise AssertionError(f"{path}: unbounded string")
        if node.get("type") == "array":
            assert "maxItems" in node, path
            walk(node["items"], path + "[*]")
        for name, child in node.get("properties", {}).items():
            assert child.get("description"), f"{path}.{name}: no description"
            walk(child, f"{path}.{name}")

    for kind in KINDS:
        schema = crdgen.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for part in ("spec", "status"):
            walk(schema["properties"][part], f"{kind.kind}.{part}")


@pytest.mark.parametrize("case", VALID_VARIANTS, ids=lambda c: c.id)
def test_models_accept_valid_variant(case) -> None:
    manifest = case.manifest()
    spec_model(manifest).model_validate(manifest["spec"])


def test_format_extensions_match_the_runners_data_layer() -> None:
    from kaizen_api.common import FORMAT_EXTENSIONS
    from kaizen_runner.data.formats import _EXTENSIONS, ALLOWED_FILE_TYPES, DataFormat

    for fmt, extensions in FORMAT_EXTENSIONS.items():
        runner = {
            ext.lstrip(".")
            for ext, kind in _EXTENSIONS.items()
            if kind in ALLOWED_FILE_TYPES[DataFormat(fmt)]
        }
        assert set(extensions) == runner, fmt


def test_time_zone_enum_is_the_pinned_tz_database_and_stays_small() -> None:
    import tzdata
    from kaizen_api.schedule import TIME_ZONES, TZ_VERSION

    assert TZ_VERSION == tzdata.IANA_VERSION and {"Asia/Tokyo", "UTC", "Europe/Berlin"} <= set(TIME_ZONES)
    assert "Mars/Olympus" not in TIME_ZONES
    size = (ROOT / "crds" / "kaizen.dev_finetunepipelines.yaml").stat().st_size
    assert size < 128 * 1024, f"the FineTunePipeline CRD grew to {size} bytes"
