"""One scan of a PrivateModel's storage on the real S3 server, without a cluster: the status patch."""

from __future__ import annotations

import json

import pytest
from kaizen_operator.registry.scan import scan

from registry.helpers import publish_like_the_runner, upload

pytestmark = pytest.mark.s3


def body(bucket: str, status: dict | None = None) -> dict:
    storage = {"s3": {"connection": {"name": "datahub"}, "bucket": bucket, "key": "models/m"}}
    return {
        "metadata": {"name": "m", "namespace": "ns", "generation": 2},
        "spec": {"title": "m", "storage": storage},
        "status": status or {},
    }


def test_a_lora_version_takes_its_tags_from_the_base_in_the_same_storage(
    s3_server, s3_bucket, tiny_models, tmp_path
) -> None:
    client = s3_server.client()
    upload(client, tiny_models["qwen2"], s3_bucket, "bases/qwen2")
    version = publish_like_the_runner(tiny_models["qwen2"], tmp_path / "ft_Qwen2_lora", adapter=True)
    config = version / "adapter" / "adapter_config.json"
    config.write_text(
        json.dumps({"peft_type": "LORA", "base_model_name_or_path": f"s3://{s3_bucket}/bases/qwen2"})
    )
    (version / "manifest.json").unlink()  # a published adapter without a manifest is judged on its files
    (version / "training_report.json").unlink()
    upload(client, version, s3_bucket, "models/m/ft_Qwen2_lora")
    status, versions = scan(body(s3_bucket), lambda name: s3_server.secret(name))
    assert status["observedGeneration"] == 2 and status["versionCount"] == 1
    entry = versions[0]
    assert entry["ready"] is True and entry["baseModel"] == f"s3://{s3_bucket}/bases/qwen2"
    assert entry["artifacts"] == {"adapter": "adapter"}
    assert (entry["tags"]["family"], entry["tags"]["adapter"], entry["tags"]["size"]) == (
        "Qwen2",
        True,
        "35K",
    )


def test_an_unknown_bucket_is_a_failed_scan_with_backoff(s3_server) -> None:
    status, _ = scan(body("no-such-bucket"), lambda name: s3_server.secret(name))
    reachable = next(c for c in status["conditions"] if c["type"] == "StorageReachable")
    assert (reachable["status"], status["scanFailures"], status["phase"]) == (
        "False",
        1,
        "StorageUnavailable",
    )
    assert "no-such-bucket" in reachable["message"]
    again, _ = scan(body("no-such-bucket", status), lambda name: s3_server.secret(name))
    assert again["scanFailures"] == 2


def test_a_manifest_that_lies_about_every_shard_fails_its_version_not_the_scan(
    s3_server, s3_bucket, tiny_models
) -> None:
    client = s3_server.client()
    upload(client, tiny_models["llama"], s3_bucket, "models/m/v1")
    shards = [f"model-{i:05d}-of-00060.safetensors" for i in range(1, 61)]
    for shard in shards:  # each one byte short of what the manifest says
        client.put_object(Bucket=s3_bucket, Key=f"models/m/v2/{shard}", Body=b"0" * 99)
    manifest = {"version": "v2", "files": [{"path": s, "size": 100} for s in shards]}
    client.put_object(Bucket=s3_bucket, Key="models/m/v2/manifest.json", Body=json.dumps(manifest).encode())
    status, versions = scan(body(s3_bucket), lambda name: s3_server.secret(name))
    assert status["latestVersion"] == "v1" and status["versionCount"] == 2
    lying = next(v for v in versions if v["name"] == "v2")
    assert lying["status"] == "failed" and len(lying["message"]) <= 4096
    assert "has 99 bytes, the manifest says 100" in lying["message"]
    assert lying["message"].endswith("40 more problem(s)")


def test_a_folder_whose_name_is_too_long_for_a_version_is_named_not_fatal(
    s3_server, s3_bucket, tiny_models
) -> None:
    client = s3_server.client()
    upload(client, tiny_models["llama"], s3_bucket, "models/m/v1")
    overlong = "ft_" + "x" * 252  # 255: S3 (and a volume) take it; a version name is at most 253
    upload(client, tiny_models["llama"], s3_bucket, f"models/m/{overlong}")
    status, versions = scan(body(s3_bucket), lambda name: s3_server.secret(name))
    assert [v["name"] for v in versions] == ["v1"] and status["latestVersion"] == "v1"
    reachable = next(c for c in status["conditions"] if c["type"] == "StorageReachable")
    assert reachable["status"] == "True"
    assert f"1 folder(s) skipped, names over 253 characters: {overlong[:40]}…" in reachable["message"]


def test_files_that_do_not_fit_a_status_entry_fail_their_version_and_name_the_field(
    s3_server, s3_bucket, tiny_models
) -> None:
    client = s3_server.client()
    upload(client, tiny_models["llama"], s3_bucket, "models/m/v1")

    def put(key: str, data: bytes | str) -> None:
        client.put_object(Bucket=s3_bucket, Key=f"models/m/{key}", Body=data)

    put("long-base/adapter_config.json", json.dumps({"base_model_name_or_path": "org/" + "b" * 3000}))
    put("long-base/adapter_model.safetensors", b"weights")
    index = {"metadata": {"total_parameters": -1}, "weight_map": {"w": "s.safetensors"}}
    put("negative/config.json", json.dumps({"model_type": "not_a_known_family"}))
    put("negative/model.safetensors.index.json", json.dumps(index))
    put("negative/s.safetensors", b"weights")
    put("negative/tokenizer.json", b"{}")
    status, versions = scan(body(s3_bucket), lambda name: s3_server.secret(name))
    assert status["versionCount"] == 3
    by_name = {v["name"]: v for v in versions}
    assert by_name["v1"]["ready"] is True
    long_base = by_name["long-base"]
    assert (long_base["status"], long_base["ready"]) == ("failed", False)
    assert long_base["message"].endswith("baseModel: String should have at most 2048 characters")
    assert by_name["negative"]["ready"] is True and by_name["negative"]["tags"].get("parameters") is None
