"""S3-compatible object storage (a "Data Hub connection") through boto3, with errors a user can act on.

The one S3 layer of the runner: data loading reads uploads through it, and training's `Store`
(checkpoints, model versions) is a key space on top of it. Files travel through boto3's managed
transfers (multipart, several parts at once, each part retried) and every call retries with
botocore's adaptive mode, so a long run survives an S3 server that hiccups or restarts. Every
botocore failure becomes a `StorageError` naming the bucket/key and the cause (wrong credentials,
missing bucket or object, unreachable endpoint), never a raw traceback.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import S3TransferFailedError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

# The standard AWS variable names: a Kubernetes Secret with exactly these keys is mounted with envFrom.
ENV_NAMES = {
    "endpoint_url": "AWS_ENDPOINT_URL",
    "access_key_id": "AWS_ACCESS_KEY_ID",
    "secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "region": "AWS_DEFAULT_REGION",
}
_DENIED = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "403"}
)
_MISSING = frozenset({"NoSuchKey", "NotFound", "404"})
_COPY_CHUNK = 1 << 20
MIB = 1 << 20
# Attempts per S3 call (botocore's AWS_MAX_ATTEMPTS, which it would read itself if no Config set it):
# with adaptive back-off, ten attempts ride out about a minute of an unreachable server.
DEFAULT_MAX_ATTEMPTS = 10
FILE_ATTEMPTS = 3
_RESTARTABLE_CODES = frozenset({"NoSuchUpload", "RequestTimeout", "InternalError", "SlowDown", "503", "500"})


def _restartable(exc: S3UploadFailedError) -> bool:
    """Worth uploading the whole file again: not a refusal (denied, no bucket) but a lost session."""
    cause = exc.__context__
    if isinstance(cause, ClientError):
        return str(cause.response.get("Error", {}).get("Code", "")) in _RESTARTABLE_CODES
    return True


def transfer_config(
    *, threshold: int = 64 * MIB, chunk: int = 64 * MIB, concurrency: int = 8
) -> TransferConfig:
    """Managed transfers: files above `threshold` go in `chunk`-sized parts, `concurrency` at a time."""
    return TransferConfig(
        multipart_threshold=threshold,
        multipart_chunksize=chunk,
        max_concurrency=concurrency,
        num_download_attempts=DEFAULT_MAX_ATTEMPTS,
        use_threads=True,
    )


class StorageError(Exception):
    """A storage operation failed; `cause` is one of not_found, no_bucket, access_denied, unreachable,
    too_large, bad_config or failed."""

    def __init__(
        self, message: str, *, cause: str, bucket: str | None = None, key: str | None = None
    ) -> None:
        super().__init__(message)
        self.cause, self.bucket, self.key = cause, bucket, key


class S3Connection(BaseModel):
    """Where a Data Hub bucket lives and how to sign in; the secret key never shows in repr or logs."""

    model_config = ConfigDict(frozen=True)

    endpoint_url: str
    access_key_id: str
    secret_access_key: SecretStr
    region: str = "us-east-1"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> S3Connection:
        env = os.environ if environ is None else environ
        return cls._from_values(
            {field: env.get(name) for field, name in ENV_NAMES.items()}, "the environment"
        )

    @classmethod
    def from_secret(cls, secret: Mapping[str, Any]) -> S3Connection:
        """A Kubernetes Secret as a dict: `stringData` as is, `data` base64-encoded (both may be present)."""
        if "data" not in secret and "stringData" not in secret:
            raise StorageError("the Secret has neither 'data' nor 'stringData'", cause="bad_config")
        values: dict[str, str] = {}
        for name, encoded in (secret.get("data") or {}).items():
            try:
                values[name] = base64.b64decode(str(encoded), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                raise StorageError(f"the Secret's data.{name} is not base64", cause="bad_config") from None
        values.update({name: str(value) for name, value in (secret.get("stringData") or {}).items()})
        secret_name = (secret.get("metadata") or {}).get("name", "")
        where = f"Secret {secret_name!r}" if secret_name else "the Secret"
        return cls._from_values({field: values.get(name) for field, name in ENV_NAMES.items()}, where)

    @classmethod
    def _from_values(cls, values: dict[str, str | None], where: str) -> S3Connection:
        missing = [
            ENV_NAMES[f] for f in ("endpoint_url", "access_key_id", "secret_access_key") if not values[f]
        ]
        if missing:
            raise StorageError(f"{where} lacks {', '.join(missing)}", cause="bad_config")
        present = {field: value for field, value in values.items() if value}
        try:
            return cls.model_validate(present)
        except ValidationError as exc:
            raise StorageError(f"{where}: {exc.errors()[0]['msg']}", cause="bad_config") from None

    def client(self) -> Any:
        """A boto3 S3 client tuned for S3-compatible servers: path-style addressing, adaptive retries
        ($AWS_MAX_ATTEMPTS, else ten), a connection pool as large as the transfers' concurrency."""
        attempts = int(os.environ.get("AWS_MAX_ATTEMPTS") or DEFAULT_MAX_ATTEMPTS)
        config = Config(
            connect_timeout=10,
            read_timeout=120,
            retries={"max_attempts": attempts, "mode": "adaptive"},
            max_pool_connections=32,
            s3={"addressing_style": "path"},
            # Many S3-compatible servers reject the streaming checksums newer boto3 sends by default.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return _session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key.get_secret_value(),
            region_name=self.region,
            config=config,
        )


@cache
def _session() -> boto3.session.Session:
    """One session per process: it caches the S3 service model, which costs most of a client's creation."""
    return boto3.session.Session()


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str = ""
    last_modified: datetime | None = None


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/key` → ("bucket", "some/key")."""
    if not url.startswith("s3://"):
        raise StorageError(f"{url!r} is not an s3:// URL", cause="bad_config")
    bucket, _, key = url[len("s3://") :].partition("/")
    if not bucket:
        raise StorageError(f"{url!r} names no bucket", cause="bad_config")
    return bucket, key


class ObjectStore:
    """Object operations on one connection."""

    def __init__(
        self, connection: S3Connection, client: Any = None, transfer: TransferConfig | None = None
    ) -> None:
        self.connection = connection
        self.client = client if client is not None else connection.client()
        self.transfer = transfer or transfer_config()

    def head(self, bucket: str, key: str) -> ObjectInfo:
        with self._errors("read", bucket, key):
            meta = self.client.head_object(Bucket=bucket, Key=key)
        return ObjectInfo(
            key, meta["ContentLength"], meta.get("ETag", "").strip('"'), meta.get("LastModified")
        )

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        with self._errors("list", bucket, prefix or None):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        item["Key"], item["Size"], item.get("ETag", "").strip('"'), item["LastModified"]
                    )

    def get_bytes(self, bucket: str, key: str, *, max_bytes: int | None = None) -> bytes:
        with self._errors("read", bucket, key):
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            chunks, size = [], 0
            for chunk in body.iter_chunks(_COPY_CHUNK):
                size += len(chunk)
                self._check_size(size, max_bytes, bucket, key)
                chunks.append(chunk)
        return b"".join(chunks)

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        with self._errors("write", bucket, key):
            self.client.put_object(Bucket=bucket, Key=key, Body=data, **extra)

    def download_file(self, bucket: str, key: str, dest: Path, *, max_bytes: int | None = None) -> Path:
        """A managed download to `dest` (parts in parallel, each retried; written under a temporary name
        and renamed, so `dest` is whole or absent); with `max_bytes`, refused first if larger."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self._errors("read", bucket, key):
            if max_bytes is not None:
                self._check_size(self.head(bucket, key).size, max_bytes, bucket, key)
            self.client.download_file(bucket, key, str(dest), Config=self.transfer)
        return dest

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        """Delete every object in the folder `prefix` (never a whole bucket); returns how many."""
        folder = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        if not folder:
            raise StorageError(
                f"refusing to delete everything in bucket {bucket!r}", cause="bad_config", bucket=bucket
            )
        keys = [info.key for info in self.list(bucket, folder)]
        self.delete_keys(bucket, keys, where=folder)
        return len(keys)

    def delete_keys(self, bucket: str, keys: Sequence[str], *, where: str) -> None:
        """Delete these objects, 1000 per request (S3's limit); errors name `where`."""
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            with self._errors("delete", bucket, where):
                self.client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})

    def upload_file(self, path: Path, bucket: str, key: str) -> None:
        """A managed upload (multipart above the threshold, parts in parallel, each retried). A multipart
        session the server lost (it restarted and forgot it) or a transfer that ran out of retries
        starts over, up to FILE_ATTEMPTS times."""
        with self._errors("write", bucket, key):
            for attempt in range(1, FILE_ATTEMPTS + 1):
                try:
                    self.client.upload_file(str(path), bucket, key, Config=self.transfer)
                    return
                except S3UploadFailedError as exc:
                    if attempt == FILE_ATTEMPTS or not _restartable(exc):
                        raise

    @staticmethod
    def _check_size(size: int, max_bytes: int | None, bucket: str, key: str) -> None:
        if max_bytes is not None and size > max_bytes:
            raise StorageError(
                f"s3://{bucket}/{key} is larger than {max_bytes} bytes",
                cause="too_large",
                bucket=bucket,
                key=key,
            )

    @contextmanager
    def _errors(self, action: str, bucket: str, key: str | None) -> Iterator[None]:
        target = f"s3://{bucket}/{key}" if key else f"bucket {bucket!r}"
        try:
            yield
        except StorageError:
            raise
        except ClientError as exc:
            raise self._client_error(exc, action, bucket, key, target) from None
        except EndpointConnectionError:
            raise StorageError(
                f"cannot {action} {target}: the S3 endpoint {self.connection.endpoint_url} is unreachable",
                cause="unreachable",
                bucket=bucket,
                key=key,
            ) from None
        except S3UploadFailedError as exc:  # boto3 wraps the ClientError of a failed upload
            if isinstance(exc.__context__, ClientError):
                raise self._client_error(exc.__context__, action, bucket, key, target) from None
            raise StorageError(
                f"cannot {action} {target}: {exc}", cause="unreachable", bucket=bucket, key=key
            ) from None
        except S3TransferFailedError as exc:
            raise StorageError(
                f"cannot {action} {target}: {exc}", cause="unreachable", bucket=bucket, key=key
            ) from None
        except BotoCoreError as exc:
            raise StorageError(
                f"cannot {action} {target}: {exc}", cause="unreachable", bucket=bucket, key=key
            ) from None

    def _client_error(
        self, exc: ClientError, action: str, bucket: str, key: str | None, target: str
    ) -> StorageError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code == "NoSuchBucket" or (code in _MISSING and not self._bucket_exists(bucket)):
            return StorageError(
                f"cannot {action} {target}: bucket {bucket!r} does not exist",
                cause="no_bucket",
                bucket=bucket,
                key=key,
            )
        if code in _MISSING:
            return StorageError(
                f"cannot {action} {target}: no such object", cause="not_found", bucket=bucket, key=key
            )
        if code in _DENIED:
            return StorageError(
                f"cannot {action} {target}: access denied ({code}); check the access key and secret key "
                "of the connection and the bucket's permissions",
                cause="access_denied",
                bucket=bucket,
                key=key,
            )
        detail = error.get("Message") or code
        return StorageError(f"cannot {action} {target}: {detail}", cause="failed", bucket=bucket, key=key)

    def _bucket_exists(self, bucket: str) -> bool:
        """After a 404 on an object: was it the bucket that is missing? (Unknown counts as present.)"""
        try:
            self.client.head_bucket(Bucket=bucket)
        except ClientError as exc:
            return str(exc.response.get("Error", {}).get("Code", "")) not in _MISSING | {"NoSuchBucket"}
        except BotoCoreError:
            return True
        return True
