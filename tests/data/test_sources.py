"""Sources: local paths, an S3 Data Hub connection (real server on 127.0.0.1) and http(s) URLs."""

from __future__ import annotations

import base64
import http.server
import threading
from pathlib import Path

import pytest
from kaizen_runner.data import DataError, Limits, Reason, load_records
from kaizen_runner.storage import S3Connection

from .test_samples import sample

ALPACA = "alpaca/alpaca_eval_mini.json"
CREDENTIALS = {
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_ACCESS_KEY_ID": "a",
    "AWS_SECRET_ACCESS_KEY": "s",
}


def fails(source, fmt, reason: Reason, **options) -> DataError:
    with pytest.raises(DataError) as caught:
        load_records(source, fmt, **options)
    assert caught.value.reason is reason, caught.value.message
    return caught.value


def test_missing_local_file(tmp_path):
    assert "no such file" in fails(tmp_path / "nope.json", "alpaca", Reason.SOURCE_NOT_FOUND).message


def test_a_folder_is_not_a_file(tmp_path):
    (tmp_path / "dir.json").mkdir()
    fails(tmp_path / "dir.json", "alpaca", Reason.SOURCE_NOT_FOUND)


def test_file_url_is_a_local_path():
    with load_records(f"file://{sample(ALPACA)}", "alpaca") as result:
        assert result.report.usable == 100


# --- S3 ---


@pytest.fixture
def uploaded(s3_server, s3_bucket):
    """The Alpaca eval sample uploaded to a fresh bucket; returns its s3:// URL."""
    s3_server.client().upload_file(str(sample(ALPACA)), s3_bucket, "datasets/alpaca_eval_mini.json")
    return f"s3://{s3_bucket}/datasets/alpaca_eval_mini.json"


@pytest.mark.s3
def test_s3_source_with_a_string_data_secret(s3_server, uploaded):
    connection = S3Connection.from_secret(s3_server.secret())
    with load_records(uploaded, "alpaca", connection=connection) as result:
        assert (result.report.total, result.report.usable) == (100, 100)
        assert result.report.source == uploaded
        downloaded = result.data.path
        assert len(list(result.records)) == 100
    assert not downloaded.exists(), "the downloaded copy is deleted on close"


@pytest.mark.s3
def test_s3_source_with_a_base64_data_secret(s3_server, uploaded):
    plain = s3_server.secret()["stringData"]
    secret = {"kind": "Secret", "data": {k: base64.b64encode(v.encode()).decode() for k, v in plain.items()}}
    with load_records(uploaded, "alpaca", connection=S3Connection.from_secret(secret)) as result:
        assert result.report.usable == 100


@pytest.mark.s3
def test_s3_source_with_credentials_from_the_environment(s3_server, uploaded, monkeypatch):
    for key, value in s3_server.secret()["stringData"].items():
        monkeypatch.setenv(key, value)
    with load_records(uploaded, "alpaca") as result:
        assert result.report.usable == 100


@pytest.mark.s3
def test_s3_wrong_secret_key_is_a_clear_error(s3_server, uploaded):
    connection = s3_server.connection(secret_access_key="not-the-secret-key-0000000000000000000")
    error = fails(uploaded, "alpaca", Reason.ACCESS_DENIED, connection=connection)
    assert uploaded in error.message and "access key and secret key" in error.message


@pytest.mark.s3
def test_s3_unknown_access_key_is_a_clear_error(s3_server, uploaded):
    connection = s3_server.connection(access_key_id="SOMEONEELSEACCESSKEY")
    assert "access denied" in fails(uploaded, "alpaca", Reason.ACCESS_DENIED, connection=connection).message


@pytest.mark.s3
def test_s3_missing_key_is_a_clear_error(s3_server, s3_bucket):
    url = f"s3://{s3_bucket}/datasets/missing.json"
    error = fails(url, "alpaca", Reason.SOURCE_NOT_FOUND, connection=s3_server.connection())
    assert error.message == f"cannot read {url}: no such object"


@pytest.mark.s3
def test_s3_missing_bucket_is_a_clear_error(s3_server):
    error = fails(
        "s3://no-such-bucket/a.json", "alpaca", Reason.SOURCE_NOT_FOUND, connection=s3_server.connection()
    )
    assert "bucket 'no-such-bucket' does not exist" in error.message


@pytest.mark.s3
def test_s3_object_over_the_limit_is_refused_before_download(s3_server, uploaded):
    limits = Limits(max_upload_bytes=1000)
    assert (
        "at most 1000 bytes"
        in fails(
            uploaded, "alpaca", Reason.FILE_TOO_LARGE, connection=s3_server.connection(), limits=limits
        ).message
    )


def test_s3_file_type_is_checked_before_anything_is_fetched():
    connection = S3Connection(endpoint_url="http://127.0.0.1:9", access_key_id="a", secret_access_key="s")
    error = fails("s3://bucket/report.xlsx", "alpaca", Reason.UNSUPPORTED_FILE_TYPE, connection=connection)
    assert error.message.startswith("s3://bucket/report.xlsx: unknown file type '.xlsx'")
    fails("s3://bucket/images.json", "sharegpt_image", Reason.UNSUPPORTED_FILE_TYPE, connection=connection)


@pytest.mark.parametrize(
    ("source", "environ", "says"),
    [
        ("s3:///train.json", CREDENTIALS, "names no bucket"),
        ("s3://bucket/train.json", {}, "the environment lacks AWS_ENDPOINT_URL"),
    ],
    ids=["no-bucket", "no-credentials"],
)
def test_s3_settings_the_user_must_fix_are_a_bad_source(source, environ, says, monkeypatch):
    """Not source_unreachable: that one is retried, and no retry fixes a URL or missing credentials."""
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert says in fails(source, "alpaca", Reason.BAD_SOURCE).message


@pytest.mark.s3
def test_s3_unreachable_endpoint(s3_server):
    connection = s3_server.connection(endpoint_url="http://127.0.0.1:9")
    error = fails("s3://bucket/a.json", "alpaca", Reason.SOURCE_UNREACHABLE, connection=connection)
    assert "http://127.0.0.1:9 is unreachable" in error.message


# --- http(s) ---


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/stream/"):
            # No Content-Length: the size is only known while reading.
            self.send_response(200)
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b" " * 1024)
            return
        super().do_GET()


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # the client hanging up on an oversized download is the point of a test


@pytest.fixture(scope="module")
def http_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    (root / "alpaca.json").write_bytes(sample(ALPACA).read_bytes())
    handler = lambda *a, **k: _Handler(*a, directory=str(root), **k)  # noqa: E731
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_source(http_root):
    with load_records(f"{http_root}/alpaca.json?download=1", "alpaca") as result:
        assert result.report.usable == 100
        assert Path(result.data.path).name == "alpaca.json"


def test_http_not_found(http_root):
    assert "HTTP 404" in fails(f"{http_root}/missing.json", "alpaca", Reason.SOURCE_NOT_FOUND).message


def test_http_declared_size_over_the_limit(http_root):
    fails(f"{http_root}/alpaca.json", "alpaca", Reason.FILE_TOO_LARGE, limits=Limits(max_upload_bytes=1000))


def test_http_stream_over_the_limit_is_cut_off(http_root):
    fails(
        f"{http_root}/stream/big.jsonl",
        "corpus",
        Reason.FILE_TOO_LARGE,
        limits=Limits(max_upload_bytes=10_000),
    )


def test_http_unreachable():
    fails("http://127.0.0.1:9/data.json", "alpaca", Reason.SOURCE_UNREACHABLE)
