"""kaizen_runner.storage against a real S3-compatible server: objects, folders, connections, errors."""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import threading
import time
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig
from kaizen_runner.storage import MIB, ObjectStore, S3Connection, StorageError, parse_s3_url, transfer_config


@pytest.fixture
def store(s3_server):
    return ObjectStore(s3_server.connection())


@pytest.mark.s3
def test_put_head_get_list(store, s3_bucket):
    store.put_bytes(s3_bucket, "a/one.txt", b"one")
    store.put_bytes(s3_bucket, "a/two.txt", b"two!")
    store.put_bytes(s3_bucket, "b/three.txt", b"3")
    assert store.head(s3_bucket, "a/two.txt").size == 4
    assert store.get_bytes(s3_bucket, "a/one.txt") == b"one"
    assert [(o.key, o.size) for o in store.list(s3_bucket, "a/")] == [("a/one.txt", 3), ("a/two.txt", 4)]


@pytest.mark.s3
def test_get_bytes_stops_at_max_bytes(store, s3_bucket):
    store.put_bytes(s3_bucket, "big", b"x" * 5000)
    with pytest.raises(StorageError) as caught:
        store.get_bytes(s3_bucket, "big", max_bytes=4999)
    assert caught.value.cause == "too_large" and "s3://" in str(caught.value)


def small_parts() -> TransferConfig:
    return transfer_config(threshold=5 * MIB, chunk=5 * MIB, concurrency=2)


def big_file(path: Path, size: int = 17 * MIB) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).digest()


@pytest.mark.s3
def test_files_above_the_multipart_threshold_go_in_parts(s3_server, s3_bucket, tmp_path):
    store = ObjectStore(s3_server.connection(), transfer=small_parts())
    parts: list[str] = []
    store.client.meta.events.register("before-send.s3.UploadPart", lambda **_: parts.append("up"))
    store.client.meta.events.register(
        "before-send.s3.GetObject", lambda request, **_: parts.append(str(request.headers.get("Range", "")))
    )
    digest = big_file(tmp_path / "model.safetensors")
    store.upload_file(tmp_path / "model.safetensors", s3_bucket, "v/model.safetensors")
    assert parts.count("up") == 4  # 17 MiB in 5 MiB parts
    assert store.head(s3_bucket, "v/model.safetensors").size == 17 * MIB
    back = store.download_file(s3_bucket, "v/model.safetensors", tmp_path / "back" / "m.bin")
    assert hashlib.sha256(back.read_bytes()).digest() == digest
    assert sum(1 for p in parts if "bytes=" in p) == 4  # ranged GETs, one per part


@pytest.mark.s3
@pytest.mark.parametrize("direction", ["upload", "download"])
def test_a_transfer_survives_the_server_stopping_and_restarting(restartable_s3, tmp_path, direction):
    """The server goes down while the second part is on its way and comes back 2 s later: the transfer
    retries and completes, with the right content."""
    server = restartable_s3
    assert server.server is not None
    store = ObjectStore(server.server.connection(), transfer=small_parts())
    store.client.create_bucket(Bucket="models")
    digest = big_file(tmp_path / "big.bin")
    if direction == "download":
        store.upload_file(tmp_path / "big.bin", "models", "big.bin")
    calls = itertools.count()
    outages: list[float] = []

    def outage(**_: object) -> None:
        if next(calls) == 1:
            server.stop()
            outages.append(time.monotonic())
            threading.Timer(2.0, server.start).start()

    event = "before-send.s3.UploadPart" if direction == "upload" else "before-send.s3.GetObject"
    store.client.meta.events.register(event, outage)
    if direction == "upload":
        store.upload_file(tmp_path / "big.bin", "models", "big.bin")
        store.client.meta.events.unregister(event, outage)
        store.download_file("models", "big.bin", tmp_path / "back.bin")
    else:
        store.download_file("models", "big.bin", tmp_path / "back.bin")
    assert outages, "the server was never stopped"
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).digest() == digest


@pytest.mark.s3
def test_missing_object_and_bucket(store, s3_bucket):
    with pytest.raises(StorageError) as missing_key:
        store.head(s3_bucket, "nope.json")
    assert (missing_key.value.cause, missing_key.value.key) == ("not_found", "nope.json")
    with pytest.raises(StorageError) as missing_bucket:
        store.get_bytes("absent-bucket", "x")
    assert missing_bucket.value.cause == "no_bucket" and "'absent-bucket' does not exist" in str(
        missing_bucket.value
    )
    with pytest.raises(StorageError) as listing:
        list(store.list("absent-bucket"))
    assert listing.value.cause == "no_bucket"


@pytest.mark.s3
def test_wrong_credentials(s3_server, s3_bucket):
    store = ObjectStore(s3_server.connection(secret_access_key="wrong-secret-key-wrong-secret-key-00000"))
    with pytest.raises(StorageError) as caught:
        store.put_bytes(s3_bucket, "x", b"x")
    assert caught.value.cause == "access_denied"
    assert f"s3://{s3_bucket}/x" in str(caught.value) and "Traceback" not in str(caught.value)


def test_connection_from_secret_shapes():
    values = {
        "AWS_ENDPOINT_URL": "http://s3.local:9000",
        "AWS_ACCESS_KEY_ID": "AK",
        "AWS_SECRET_ACCESS_KEY": "SK",
    }
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    from_data = S3Connection.from_secret({"metadata": {"name": "hub"}, "data": encoded})
    from_string_data = S3Connection.from_secret({"stringData": {**values, "AWS_DEFAULT_REGION": "eu-west-1"}})
    assert from_data.endpoint_url == "http://s3.local:9000" and from_data.region == "us-east-1"
    assert from_string_data.region == "eu-west-1"
    assert from_data.secret_access_key.get_secret_value() == "SK"
    assert "SK" not in repr(from_data) and "SK" not in str(from_data)


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ({"kind": "Secret"}, "neither 'data' nor 'stringData'"),
        (
            {"metadata": {"name": "hub"}, "stringData": {"AWS_ACCESS_KEY_ID": "a"}},
            "Secret 'hub' lacks AWS_ENDPOINT_URL",
        ),
        ({"data": {"AWS_ENDPOINT_URL": "not base64!"}}, "data.AWS_ENDPOINT_URL is not base64"),
    ],
)
def test_bad_secrets(secret, message):
    with pytest.raises(StorageError) as caught:
        S3Connection.from_secret(secret)
    assert message in str(caught.value) and caught.value.cause == "bad_config"


def test_connection_from_env():
    env = {
        "AWS_ENDPOINT_URL": "http://e",
        "AWS_ACCESS_KEY_ID": "a",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_DEFAULT_REGION": "r",
    }
    connection = S3Connection.from_env(env)
    assert (connection.endpoint_url, connection.access_key_id, connection.region) == ("http://e", "a", "r")
    with pytest.raises(StorageError, match="the environment lacks AWS_SECRET_ACCESS_KEY"):
        S3Connection.from_env({"AWS_ENDPOINT_URL": "http://e", "AWS_ACCESS_KEY_ID": "a"})


def test_unreachable_endpoint_names_it(monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the retries of a real pod would take a minute
    store = ObjectStore(
        S3Connection(endpoint_url="http://127.0.0.1:9", access_key_id="a", secret_access_key="s")
    )
    with pytest.raises(StorageError) as caught:
        store.head("bucket", "key")
    assert caught.value.cause == "unreachable" and "http://127.0.0.1:9 is unreachable" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "parsed"), [("s3://b/k/x.json", ("b", "k/x.json")), ("s3://b", ("b", "")), ("s3://b/", ("b", ""))]
)
def test_parse_s3_url(url, parsed):
    assert parse_s3_url(url) == parsed


@pytest.mark.parametrize("url", ["http://b/k", "s3:///k"])
def test_parse_s3_url_rejects(url):
    with pytest.raises(StorageError):
        parse_s3_url(url)


@pytest.mark.s3
def test_delete_prefix_keeps_a_sibling_folder(store, s3_bucket):
    store.put_bytes(s3_bucket, "runs/r1/a.txt", b"a")
    store.put_bytes(s3_bucket, "runs/r10/keep.txt", b"a sibling folder whose name starts the same")
    assert store.delete_prefix(s3_bucket, "runs/r1") == 1
    assert [o.key for o in store.list(s3_bucket)] == ["runs/r10/keep.txt"]
    with pytest.raises(StorageError, match="refusing to delete everything"):
        store.delete_prefix(s3_bucket, "")
