"""kaizen_runner.storage against a real S3-compatible server: objects, folders, connections, errors."""

from __future__ import annotations

import base64

import pytest
from kaizen_runner.storage import ObjectStore, S3Connection, StorageError, parse_s3_url


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


@pytest.mark.s3
def test_upload_dir_download_prefix_delete_prefix(store, s3_bucket, tmp_path):
    source = tmp_path / "out"
    (source / "checkpoint-10").mkdir(parents=True)
    (source / "checkpoint-10" / "model.safetensors").write_bytes(b"\0" * 9 * 1024 * 1024)  # multipart upload
    (source / "config.json").write_text("{}")
    (source / "link.json").symlink_to(source / "config.json")
    keys = store.upload_dir(source, s3_bucket, "runs/r1")
    assert keys == ["runs/r1/checkpoint-10/model.safetensors", "runs/r1/config.json"]
    target = tmp_path / "back"
    written = store.download_prefix(s3_bucket, "runs/r1", target)
    assert sorted(p.relative_to(target).as_posix() for p in written) == [
        "checkpoint-10/model.safetensors",
        "config.json",
    ]
    assert (target / "checkpoint-10" / "model.safetensors").stat().st_size == 9 * 1024 * 1024
    store.put_bytes(s3_bucket, "runs/r10/keep.txt", b"a sibling folder whose name starts the same")
    assert len(store.download_prefix(s3_bucket, "runs/r1", tmp_path / "again")) == 2
    assert store.delete_prefix(s3_bucket, "runs/r1") == 2
    assert [o.key for o in store.list(s3_bucket)] == ["runs/r10/keep.txt"]
    with pytest.raises(StorageError, match="refusing to delete everything"):
        store.delete_prefix(s3_bucket, "")


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


def test_unreachable_endpoint_names_it():
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
