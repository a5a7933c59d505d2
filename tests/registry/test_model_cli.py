"""`kaizen-runner model check|upload|download` against real folders and the real S3 server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from kaizen_operator.registry.scan import check_version
from kaizen_operator.registry.storage import LocalModelStorage
from kaizen_runner.cli import main
from kaizen_runner.model.transfer import MIN_PART_SIZE, build_manifest, upload_file_resumable

from registry.helpers import keys


def test_check_prints_the_operators_verdict(tiny_models, capsys) -> None:
    assert main(["model", "check", str(tiny_models["llava"]), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = check_version(LocalModelStorage(tiny_models["llava"])).to_json()
    assert printed == {"location": str(tiny_models["llava"]), **expected}
    assert printed["tags"]["type"] == "VLM"


def test_check_names_what_is_missing(model_copy, capsys) -> None:
    folder = model_copy("llama")
    (folder / "config.json").unlink()
    assert main(["model", "check", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "not ready (created)" in out and "missing: config.json" in out


@pytest.fixture
def aws_env(s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    return s3_server


@pytest.mark.s3
def test_upload_writes_the_manifest_last_and_download_verifies(
    aws_env, s3_bucket, model_copy, tmp_path, capsys
) -> None:
    folder = model_copy("llama")
    target = f"s3://{s3_bucket}/models/m"
    assert main(["model", "upload", str(folder), "--to", target, "--version", "v1", "--no-progress"]) == 0
    stored = keys(aws_env.client(), s3_bucket, "models/m/v1/")
    assert "models/m/v1/manifest.json" in stored and "models/m/v1/.kaizen-uploading" not in stored
    assert len(stored) == len(list(folder.iterdir())) + 1
    assert main(["model", "check", f"{target}/v1"]) == 0
    assert main(["model", "upload", str(folder), "--to", target, "--version", "v1", "--no-progress"]) == 2
    assert "versions are immutable" in capsys.readouterr().err
    dest = tmp_path / "downloaded"
    assert main(["model", "download", f"{target}/v1", str(dest), "--no-progress"]) == 0
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [*(p.name for p in folder.iterdir()), "manifest.json"]
    )
    weights = dest / "model.safetensors"
    weights.write_bytes(b"0" * weights.stat().st_size)  # same size, wrong bytes: fetched again
    assert main(["model", "download", f"{target}/v1", str(dest), "--no-progress"]) == 0
    assert weights.read_bytes() == (folder / "model.safetensors").read_bytes()


@pytest.mark.s3
def test_an_interrupted_multipart_upload_resumes_with_the_parts_already_sent(
    aws_env, s3_bucket, tmp_path
) -> None:
    big = tmp_path / "model.safetensors"
    big.write_bytes(os.urandom(2 * MIN_PART_SIZE + 1234))
    client = aws_env.client()
    key = "models/m/v2/model.safetensors"
    upload_id = client.create_multipart_upload(Bucket=s3_bucket, Key=key)["UploadId"]
    with big.open("rb") as handle:
        client.upload_part(
            Bucket=s3_bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=handle.read(MIN_PART_SIZE)
        )
    sent = upload_file_resumable(client, big, s3_bucket, key, part_size=MIN_PART_SIZE)
    assert sent == big.stat().st_size - MIN_PART_SIZE
    assert client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == big.read_bytes()


@pytest.mark.s3
def test_a_large_file_goes_up_in_parts_when_no_upload_was_begun(aws_env, s3_bucket, tmp_path) -> None:
    big = tmp_path / "model.safetensors"
    big.write_bytes(os.urandom(MIN_PART_SIZE + 1234))
    client = aws_env.client()
    sent = upload_file_resumable(
        client, big, s3_bucket, "models/m/v5/model.safetensors", part_size=MIN_PART_SIZE
    )
    assert sent == big.stat().st_size
    stored = client.get_object(Bucket=s3_bucket, Key="models/m/v5/model.safetensors")["Body"].read()
    assert stored == big.read_bytes()


def test_a_folder_that_is_not_ready_is_not_uploaded(model_copy, capsys) -> None:
    folder = model_copy("llama")
    (folder / "tokenizer.json").unlink()
    assert main(["model", "upload", str(folder), "--to", "s3://bucket-x/m", "--no-progress"]) == 2
    assert "not a ready model version" in capsys.readouterr().err


def test_the_manifest_lists_every_file_with_its_checksum(tiny_models) -> None:
    manifest = build_manifest(Path(tiny_models["qwen2"]), "v", "Qwen2")
    assert {f.path for f in manifest.files} == {p.name for p in tiny_models["qwen2"].iterdir()}
    assert all(f.sha256 and len(f.sha256) == 64 for f in manifest.files)


@pytest.mark.s3
def test_an_interrupted_upload_shows_as_uploading_and_resumes_file_by_file(
    aws_env, s3_bucket, model_copy
) -> None:
    from kaizen_operator.registry.scan import check_version
    from kaizen_operator.registry.storage import S3ModelStorage
    from kaizen_runner.model.transfer import upload_version
    from kaizen_runner.storage import ObjectStore

    folder = model_copy("llama")
    objects = ObjectStore(aws_env.connection())
    manifest = build_manifest(folder, "v3")
    # The first attempt died after the marker and the weights.
    objects.put_bytes(s3_bucket, "models/m/v3/.kaizen-uploading", b"{}")
    objects.upload_file(folder / "model.safetensors", s3_bucket, "models/m/v3/model.safetensors")
    assert check_version(S3ModelStorage(objects, s3_bucket, "models/m/v3")).status == "uploading"
    sent = upload_version(objects, folder, s3_bucket, "models/m/v3", manifest)
    total = sum(f.size for f in manifest.files)
    assert sent == total - (folder / "model.safetensors").stat().st_size
    verdict = check_version(S3ModelStorage(objects, s3_bucket, "models/m/v3"))
    assert verdict.ready and verdict.manifest is not None and verdict.manifest.version == "v3"


@pytest.mark.s3
def test_a_resumed_upload_sends_a_file_rewritten_at_the_same_size_again(
    aws_env, s3_bucket, model_copy, tmp_path
) -> None:
    from kaizen_runner.model.transfer import upload_version
    from kaizen_runner.storage import ObjectStore
    from kaizen_runner.train.output import verify_local_version

    folder = model_copy("llama")
    (folder / "big.bin").write_bytes(os.urandom(2 * MIN_PART_SIZE + 1234))
    objects, client = ObjectStore(aws_env.connection()), aws_env.client()
    # The first attempt stored the weights and the large file (in parts), then died; the weights were
    # retrained since: the same size, other bytes. The large file did not change.
    objects.upload_file(folder / "model.safetensors", s3_bucket, "models/m/v4/model.safetensors")
    upload_file_resumable(
        client, folder / "big.bin", s3_bucket, "models/m/v4/big.bin", part_size=MIN_PART_SIZE
    )
    weights = folder / "model.safetensors"
    weights.write_bytes(bytes(b ^ 0xFF for b in weights.read_bytes()))
    manifest = build_manifest(folder, "v4")
    sent = upload_version(objects, folder, s3_bucket, "models/m/v4", manifest, part_size=MIN_PART_SIZE)
    assert sent == sum(f.size for f in manifest.files) - (folder / "big.bin").stat().st_size
    stored = client.get_object(Bucket=s3_bucket, Key="models/m/v4/model.safetensors")["Body"].read()
    assert stored == weights.read_bytes()
    dest = tmp_path / "downloaded"
    assert main(["model", "download", f"s3://{s3_bucket}/models/m/v4", str(dest), "--no-progress"]) == 0
    assert verify_local_version(dest) == []


@pytest.mark.s3
def test_a_resumed_download_replaces_a_same_size_file_with_other_bytes(aws_env, s3_bucket, tmp_path) -> None:
    """Without a manifest the stored object's ETag decides: single-part (the MD5 of the body) and
    multipart (the MD5 of the parts' MD5s and their count) alike; a matching local file is kept."""
    from kaizen_runner.model.transfer import download_version
    from kaizen_runner.storage import ObjectStore

    objects, client = ObjectStore(aws_env.connection()), aws_env.client()
    small, big = os.urandom(4096), os.urandom(2 * MIN_PART_SIZE + 1234)
    objects.put_bytes(s3_bucket, "plain/small.bin", small)
    (tmp_path / "big.bin").write_bytes(big)
    upload_file_resumable(client, tmp_path / "big.bin", s3_bucket, "plain/big.bin", part_size=MIN_PART_SIZE)
    dest = tmp_path / "downloaded"
    dest.mkdir()
    (dest / "small.bin").write_bytes(bytes(b ^ 0xFF for b in small))
    (dest / "big.bin").write_bytes(big[:-1] + bytes([big[-1] ^ 0xFF]))
    download_version(objects, s3_bucket, "plain", dest)
    assert (dest / "small.bin").read_bytes() == small
    assert (dest / "big.bin").read_bytes() == big
    kept = (dest / "small.bin").stat().st_mtime_ns
    download_version(objects, s3_bucket, "plain", dest)
    assert (dest / "small.bin").stat().st_mtime_ns == kept, "a file that matches is not fetched again"


@pytest.fixture(params=[pytest.param("rclone", marks=pytest.mark.s3), "moto"])
def multipart_store(request: pytest.FixtureRequest):
    """(ObjectStore, bucket, the ETag form the server gives a multipart object): rclone's server (the
    tests' S3) answers with the body's MD5, moto's with AWS's "<md5 of the parts' md5s>-<n>"."""
    from kaizen_runner.storage import ObjectStore, S3Connection

    if request.param == "rclone":
        server = request.getfixturevalue("s3_server")
        return ObjectStore(server.connection()), request.getfixturevalue("s3_bucket"), "md5"
    endpoint = request.getfixturevalue("policy_s3")
    connection = S3Connection(
        endpoint_url=endpoint, access_key_id="KAIZENTESTACCESSKEY1", secret_access_key="x" * 40
    )
    objects = ObjectStore(connection)
    objects.client.create_bucket(Bucket="multipart-etags")
    return objects, "multipart-etags", "aws-multipart"


def test_a_resumed_download_checks_an_object_boto3_uploaded_in_parts(multipart_store, tmp_path) -> None:
    """An object boto3's transfer manager stored in three parts, downloaded without a manifest over an
    earlier attempt's local copies: the copy with the same bytes is kept, the one with a byte changed
    is fetched again, whichever ETag form the server gives (on moto, the part size behind "-3" comes
    from HeadObject partNumber=1)."""
    import hashlib

    from boto3.s3.transfer import TransferConfig
    from kaizen_runner.model.transfer import download_version

    objects, bucket, form = multipart_store
    data = os.urandom(2 * MIN_PART_SIZE + 1234)
    (tmp_path / "big.bin").write_bytes(data)
    config = TransferConfig(multipart_threshold=MIN_PART_SIZE, multipart_chunksize=MIN_PART_SIZE)
    for key in ("parts/kept.bin", "parts/corrupted.bin"):
        objects.client.upload_file(str(tmp_path / "big.bin"), bucket, key, Config=config)
    etag = objects.head(bucket, "parts/kept.bin").etag
    if form == "aws-multipart":
        chunks = [data[i : i + MIN_PART_SIZE] for i in range(0, len(data), MIN_PART_SIZE)]
        assert etag == hashlib.md5(b"".join(hashlib.md5(c).digest() for c in chunks)).hexdigest() + "-3"
    else:
        assert etag == hashlib.md5(data).hexdigest()
    dest = tmp_path / "downloaded"
    dest.mkdir()
    (dest / "kept.bin").write_bytes(data)
    corrupted = bytearray(data)
    corrupted[MIN_PART_SIZE] ^= 0xFF  # the second part's first byte
    (dest / "corrupted.bin").write_bytes(corrupted)
    kept = (dest / "kept.bin").stat().st_ino
    download_version(objects, bucket, "parts", dest)
    assert (dest / "corrupted.bin").read_bytes() == data, "a copy with other bytes is fetched again"
    assert (dest / "kept.bin").stat().st_ino == kept, "a copy with the stored bytes is not fetched again"


def test_a_multipart_etag_is_checked_with_the_part_size_the_server_names(tmp_path) -> None:
    """AWS gives a multipart object the ETag "<md5 of the parts' md5s>-<n>"; the part size behind it is
    the size of part 1 (HeadObject partNumber=1), asked for exactly so here (a stubbed client); moto's
    server checks it end to end above."""
    import hashlib

    from botocore.stub import Stubber
    from kaizen_runner.model.transfer import _holds
    from kaizen_runner.storage import ObjectInfo, ObjectStore, S3Connection

    data = os.urandom(2 * MIN_PART_SIZE + 1234)
    parts = [data[i : i + MIN_PART_SIZE] for i in range(0, len(data), MIN_PART_SIZE)]
    etag = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + f"-{len(parts)}"
    connection = S3Connection(endpoint_url="http://127.0.0.1:9", access_key_id="a", secret_access_key="b")
    objects = ObjectStore(connection)
    info = ObjectInfo("v/big.bin", len(data), etag)
    local = tmp_path / "big.bin"
    with Stubber(objects.client) as stub:
        for content in (data, data[:-1] + bytes([data[-1] ^ 0xFF])):
            local.write_bytes(content)
            stub.add_response(
                "head_object",
                {"ContentLength": MIN_PART_SIZE, "ETag": f'"{etag}"', "PartsCount": len(parts)},
                {"Bucket": "b", "Key": "v/big.bin", "PartNumber": 1},
            )
            assert _holds(objects, "b", info, local, None) is (content == data)
        stub.assert_no_pending_responses()


@pytest.mark.s3
@pytest.mark.parametrize("version", ["checkpoints", ".v1", "_v1", "team/v1", "v" * 254])
def test_upload_refuses_a_version_name_the_registry_would_never_list(
    aws_env, s3_bucket, model_copy, capsys, version
) -> None:
    target = f"s3://{s3_bucket}/models/m"
    argv = [
        "model",
        "upload",
        str(model_copy("llama")),
        "--to",
        target,
        "--version",
        version,
        "--no-progress",
    ]
    assert main(argv) == 2
    assert f"version {version!r}" in capsys.readouterr().err
    assert keys(aws_env.client(), s3_bucket, "models/m/") == []
