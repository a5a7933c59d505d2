"""Versions from a storage listing, merged with what runs recorded; bounded so the object stays small."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from kaizen_api.privatemodel import FILES_INLINE_MAX, VERSIONS_MAX, PrivateModelStatus
from kaizen_operator.registry.readiness import StoredFile, Verdict
from kaizen_operator.registry.summary import model_labels, retry_delay, scan_status
from kaizen_operator.registry.usable import ready_version
from kaizen_operator.registry.versions import (
    Versions,
    build_versions,
    group_versions,
    human_bytes,
    latest_ready,
    unchanged,
)
from kaizen_operator.registry_link import merge_version

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def listing(*paths: str, size: int = 10) -> list[StoredFile]:
    return [StoredFile(p, size, NOW - timedelta(minutes=i)) for i, p in enumerate(paths)]


def uri(version: str) -> str:
    return f"s3://b/m/.kaizen/listings/{version}.json"


def test_checkpoints_dotted_folders_and_root_files_are_not_versions() -> None:
    groups = group_versions(
        listing(
            "v1/config.json",
            "v1/model.safetensors",
            "checkpoints/ft_x/checkpoint-10/model.safetensors",
            ".checkpoints/ft_x/checkpoint-10/model.safetensors",
            ".kaizen/listings/v1.json",
            "_tmp/x",
            "README.md",
            "v2/model/config.json.partial",
            "v2/model/config.json",
        )
    )
    assert {name: sorted(files) for name, files in groups.items()} == {
        "v1": ["config.json", "model.safetensors"],
        "v2": ["model/config.json"],
    }


def test_new_versions_get_indexes_by_creation_and_keep_them() -> None:
    groups = group_versions(listing("b/config.json", "a/config.json"))  # b is the newer one
    verdicts = {"a": Verdict("ready"), "b": Verdict("created", missing=["tokenizer.json"])}
    versions, total, *_ = build_versions(groups, verdicts, None, NOW, uri)
    assert [(v["name"], v["index"], v["status"], v["ready"]) for v in versions] == [
        ("a", 0, "ready", True),
        ("b", 1, "created", False),
    ]
    assert versions[1]["missing"] == ["tokenizer.json"] and total == 2
    again, _, *_ = build_versions(
        group_versions(listing("a/config.json")), {"a": Verdict("ready")}, versions, NOW, uri
    )
    assert [(v["name"], v["index"]) for v in again] == [("a", 0)], "a version gone from storage leaves"


def test_a_run_recorded_version_waits_for_its_files_and_keeps_what_the_run_wrote() -> None:
    recorded = [{"index": 0, "name": "ft_1", "status": "training", "pipeline": "p", "run": "ft_1"}]
    versions, total, *_ = build_versions({}, {}, recorded, NOW, uri)
    assert versions[0]["status"] == "training" and versions[0]["ready"] is False and total == 1
    assert versions[0]["scannedTime"], "marked as scanned, so the event handler does not fire again"
    recorded_ready = [{"index": 0, "name": "ft_1", "status": "ready", "ready": True, "pipeline": "p"}]
    versions, _, *_ = build_versions({}, {}, recorded_ready, NOW, uri)
    assert (versions[0]["status"], versions[0]["ready"]) == ("uploading", False), "not ready before its files"
    groups = group_versions(listing("ft_1/manifest.json", "ft_1/model/config.json"))
    versions, _, *_ = build_versions(groups, {"ft_1": Verdict("ready")}, recorded, NOW, uri)
    assert (versions[0]["status"], versions[0]["pipeline"], versions[0]["fileCount"]) == ("ready", "p", 1)


def test_deployed_stays_deployed_while_ready() -> None:
    previous = [{"index": 3, "name": "v", "status": "deployed", "ready": True, "fileCount": 1}]
    versions, _, *_ = build_versions(
        group_versions(listing("v/config.json")), {"v": Verdict("ready")}, previous, NOW, uri
    )
    assert versions[0]["status"] == "deployed" and versions[0]["index"] == 3


def test_five_thousand_files_keep_the_object_under_256_kib() -> None:
    paths = [f"big/shards/model-{i:05d}-of-05000.safetensors" for i in range(5000)]
    groups = group_versions(listing(*paths, size=123_456_789))
    versions, total, *_ = build_versions(groups, {"big": Verdict("ready")}, None, NOW, uri)
    status = scan_status({}, versions, total, 5000 * 123_456_789, "s3://b/m", NOW, 1)
    PrivateModelStatus.model_validate(status)  # the CRD's bounds, as the API models declare them
    obj = {
        "apiVersion": "kaizen.dev/v1alpha1",
        "kind": "PrivateModel",
        "metadata": {"name": "m"},
        "status": status,
    }
    size = len(json.dumps(obj).encode())
    assert size < 256 * 1024, size
    version = versions[0]
    assert version["fileCount"] == 5000 and len(version["files"]) == FILES_INLINE_MAX
    assert version["filesListing"] == uri("big") and version["sizeBytes"] == 5000 * 123_456_789


def test_many_versions_share_one_inline_budget() -> None:
    paths = [f"v{v:03d}/f{i:03d}" for v in range(200) for i in range(60)]
    versions, _, *_ = build_versions(
        group_versions(listing(*paths, size=1)),
        {f"v{v:03d}": Verdict("ready") for v in range(200)},
        None,
        NOW,
        uri,
    )
    inline = sum(len(v.get("files") or []) for v in versions)
    assert inline == 500 and len(json.dumps(versions)) < 200 * 1024


def test_summary_names_the_latest_ready_version_and_why_others_are_not() -> None:
    versions = [
        {"index": 0, "name": "a", "status": "ready", "ready": True, "sizeBytes": 5},
        {"index": 1, "name": "b", "status": "created", "ready": False, "message": "missing tokenizer.json"},
    ]
    status = scan_status({}, versions, 2, 5, "s3://b/m", NOW, 4)
    assert (status["latestVersion"], status["versionCount"], status["readyVersionCount"]) == ("a", 2, 1)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["observedGeneration"]) == ("True", 4)
    status = scan_status({}, versions[1:], 1, 0, "s3://b/m", NOW, 4)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and "b: missing tokenizer.json" in ready["message"]


def test_labels_follow_tags_and_the_spec_and_stale_ones_are_removed() -> None:
    from kaizen_api.privatemodel import PrivateModelSpec

    spec = PrivateModelSpec.model_validate(
        {
            "title": "t",
            "baseModel": "Llama-3.1-8B",
            "tags": {"subject": ["Medicine"], "framework": ["PyTorch"]},
            "storage": {"s3": {"connection": {"name": "c"}, "bucket": "bkt", "key": "m/"}},
        }
    )
    versions = [
        {
            "index": 0,
            "name": "a",
            "ready": True,
            "tags": {"family": "Llama", "type": "LLM", "parameters": 8_030_261_248},
        }
    ]
    current = {"kaizen.dev/type": "vlm", "task.tags.kaizen.dev/old": "true", "team": "x"}
    assert model_labels(spec, versions, current) == {
        "kaizen.dev/base-model": "llama-3.1-8b",
        "kaizen.dev/family": "llama",
        "kaizen.dev/size-bucket": "1b-10b",
        "kaizen.dev/type": "llm",
        "subject.tags.kaizen.dev/medicine": "true",
        "framework.tags.kaizen.dev/pytorch": "true",
        "task.tags.kaizen.dev/old": None,
    }


def test_backoff_doubles_up_to_the_resync() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 10)] == [30, 60, 120, 1800]
    assert human_bytes(1536) == "1.5Ki" and human_bytes(5 * 1024**3) == "5.0Gi"


def test_unchanged_versions_keep_to_the_inline_budget_as_newer_ones_arrive() -> None:
    old = {"v000": {f"f{i:03d}": StoredFile(f"f{i:03d}", 1, NOW) for i in range(FILES_INLINE_MAX)}}
    first = rescan(old, None)
    assert len(first.versions[0]["files"]) == FILES_INLINE_MAX
    newer = {
        f"v{v:03d}": {f"f{i:03d}": StoredFile(f"f{i:03d}", 1, NOW + timedelta(hours=v)) for i in range(50)}
        for v in range(1, 11)
    }
    versions = rescan({**old, **newer}, first).versions  # v000 is unchanged: not judged again
    assert sum(len(v.get("files") or []) for v in versions) == 500
    assert "files" not in versions[0] and versions[0]["filesListing"] == uri("v000")


def test_an_unchanged_version_is_not_judged_again_and_a_changed_one_is() -> None:
    from kaizen_operator.registry.versions import unchanged

    groups = group_versions(listing("v/config.json", "v/model.safetensors"))
    versions, _, *_ = build_versions(groups, {"v": Verdict("ready")}, None, NOW, uri)
    assert unchanged(groups["v"], versions[0])
    later = NOW + timedelta(hours=1)
    again, _, *_ = build_versions(groups, {}, versions, later, uri)  # no verdict: nothing was read
    assert again[0]["status"] == "ready" and again[0]["scannedTime"] == later.isoformat()
    rewritten = group_versions(
        [StoredFile("v/config.json", 10, later), StoredFile("v/model.safetensors", 10, NOW)]
    )
    assert not unchanged(rewritten["v"], versions[0]), "same size, newer modification"
    assert not unchanged(group_versions(listing("v/config.json"))["v"], versions[0])


def test_evaluations_recorded_by_the_eval_controller_survive_a_scan() -> None:
    evaluation = {"evalJob": "e1", "runName": "r1", "suite": "standard", "results": {"bleu": 0.4}}
    previous = [{"index": 0, "name": "v", "status": "ready", "ready": True, "evaluations": [evaluation]}]
    groups = group_versions(listing("v/config.json"))
    versions, _, *_ = build_versions(groups, {"v": Verdict("ready")}, previous, NOW, uri)
    assert versions[0]["evaluations"] == [evaluation]
    PrivateModelStatus.model_validate({"versions": versions})


def versions_in_storage(count: int, start: int = 0) -> dict[str, dict[str, StoredFile]]:
    """`count` versions v000, v001, ... created an hour apart, in that order."""
    return {
        f"v{i:03d}": {"config.json": StoredFile("config.json", 10, NOW + timedelta(hours=i))}
        for i in range(start, start + count)
    }


def rescan(groups: dict, previous: Versions | None) -> Versions:
    """A scan as registry.scan runs it: only versions new or changed since their entry are judged."""
    listed = {v["name"]: v for v in previous.versions} if previous else {}
    return build_versions(
        groups,
        {name: Verdict("ready") for name, files in groups.items() if not unchanged(files, listed.get(name))},
        previous.versions if previous else None,
        NOW,
        uri,
        last_index=previous.last_index if previous else None,
        dropped_created=previous.dropped_created if previous else None,
    )


def test_beyond_the_bound_the_oldest_version_is_dropped_for_good_and_never_becomes_the_latest() -> None:
    groups = versions_in_storage(VERSIONS_MAX + 1)
    built = rescan(groups, None)
    newest = built.versions[-1]
    newest["evaluations"] = [{"evalJob": "e", "runName": "e-1", "suite": "standard"}]
    newest["promoted"] = True
    for _ in range(3):
        built = rescan(groups, built)
        assert [v["name"] for v in built.versions] == [f"v{i:03d}" for i in range(1, VERSIONS_MAX + 1)]
        assert [v["index"] for v in built.versions] == list(range(1, VERSIONS_MAX + 1)), (
            "no index given again"
        )
        assert (built.total, built.last_index) == (VERSIONS_MAX + 1, VERSIONS_MAX)
        assert built.dropped_created == NOW, "v000's creation"
        assert latest_ready(built.versions) == "v200" == ready_version({"versions": built.versions}).name
        assert built.versions[-1]["promoted"] and built.versions[-1]["evaluations"]
    groups = {**groups, **versions_in_storage(1, start=VERSIONS_MAX + 1)}
    built = rescan(groups, built)
    assert (built.versions[0]["name"], built.versions[-1]["name"], built.versions[-1]["index"]) == (
        "v002",
        "v201",
        VERSIONS_MAX + 1,
    )
    del groups["v150"]  # a listed version deleted from storage: the dropped ones stay out
    built = rescan(groups, built)
    assert built.versions[0]["name"] == "v002" and len(built.versions) == VERSIONS_MAX - 1


def test_the_newest_version_deleted_does_not_lend_its_index_to_the_next() -> None:
    groups = versions_in_storage(3)
    built = rescan(groups, None)
    del groups["v002"]
    built = rescan(groups, built)
    assert built.last_index == 2
    built = rescan({**groups, **versions_in_storage(1, start=3)}, built)
    assert [(v["name"], v["index"]) for v in built.versions] == [("v000", 0), ("v001", 1), ("v003", 3)]


def test_a_run_recording_into_a_full_status_pushes_out_the_oldest_for_good() -> None:
    groups = versions_in_storage(VERSIONS_MAX)
    built = rescan(groups, None)
    assert built.dropped_created is None
    created = NOW + timedelta(hours=VERSIONS_MAX)
    recorded = merge_version(built.versions, "ft_run", created)
    assert recorded is not None and len(recorded) == VERSIONS_MAX and recorded[0]["name"] == "v001"
    groups["ft_run"] = {"config.json": StoredFile("config.json", 10, created)}
    built = rescan(groups, built._replace(versions=recorded))
    assert [v["name"] for v in built.versions][:: VERSIONS_MAX - 1] == ["v001", "ft_run"]
    assert built.dropped_created == NOW and latest_ready(built.versions) == "ft_run"
    PrivateModelStatus.model_validate(scan_status({}, built.versions, built.total, 0, "s3://b/m", NOW, 1))
