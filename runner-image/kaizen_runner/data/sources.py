"""Where data comes from: a local path, an S3 Data Hub object, or an http(s) URL.

Remote data is copied to a temporary local file first (streamed, and stopped as soon as it
proves larger than the upload limit), so every reader works on a seekable local file and a
second pass over the data costs no second download.
"""

from __future__ import annotations

import posixpath
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from kaizen_runner.data.formats import DataFormat, FileType, check_file_type, file_type_of
from kaizen_runner.data.issues import DataError, Reason
from kaizen_runner.data.limits import Limits, human_size

if TYPE_CHECKING:
    from kaizen_runner.storage import S3Connection

_STORAGE_REASONS = {
    "not_found": Reason.SOURCE_NOT_FOUND,
    "no_bucket": Reason.SOURCE_NOT_FOUND,
    "access_denied": Reason.ACCESS_DENIED,
    "too_large": Reason.FILE_TOO_LARGE,
    "bad_config": Reason.BAD_SOURCE,  # an s3:// URL without a bucket, missing or invalid AWS_* settings
}
_HTTP_TIMEOUT = (10, 60)
_CHUNK = 1 << 20


@dataclass
class LocalData:
    """A data file on local disk; `name` is what the user gave (path, s3:// or https:// URL)."""

    path: Path
    name: str
    file_type: FileType
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def fetch(
    source: str | Path, fmt: DataFormat, *, connection: S3Connection | None = None, limits: Limits
) -> LocalData:
    """Make `source` a local file of a type `fmt` accepts, refusing it before it is read (or downloaded)
    whole if it is not one or exceeds the upload limit."""
    text = str(source)
    if text.startswith("s3://"):
        return _fetch_s3(text, fmt, connection, limits)
    if text.startswith(("http://", "https://")):
        return _fetch_http(text, fmt, limits)
    path = Path(text[len("file://") :] if text.startswith("file://") else text)
    kind = _file_type(path.name, fmt, text)
    if not path.exists():
        raise DataError(Reason.SOURCE_NOT_FOUND, f"{text}: no such file")
    if not path.is_file():
        raise DataError(Reason.SOURCE_NOT_FOUND, f"{text}: not a file")
    _check_size(path.stat().st_size, text, limits)
    return LocalData(path, text, kind)


def _file_type(name: str, fmt: DataFormat, source: str) -> FileType:
    kind = file_type_of(name, source)
    check_file_type(fmt, kind, source)
    return kind


def _check_size(size: int, name: str, limits: Limits) -> None:
    if size > limits.max_upload_bytes:
        raise DataError(
            Reason.FILE_TOO_LARGE,
            f"{name}: {human_size(size)}; a file may be at most {human_size(limits.max_upload_bytes)} here",
        )


def _scratch(name: str) -> tuple[tempfile.TemporaryDirectory[str], Path]:
    tmp = tempfile.TemporaryDirectory(prefix="kaizen-data-")
    return tmp, Path(tmp.name) / (posixpath.basename(name) or "data")


def _fetch_s3(url: str, fmt: DataFormat, connection: S3Connection | None, limits: Limits) -> LocalData:
    # boto3 is imported only when S3 is used: it adds seconds to every runner start otherwise.
    from kaizen_runner.storage import ObjectStore, S3Connection, StorageError, parse_s3_url

    try:
        bucket, key = parse_s3_url(url)
        kind = _file_type(key, fmt, url)
        store = ObjectStore(connection or S3Connection.from_env())
        _check_size(store.head(bucket, key).size, url, limits)
        tmp, local = _scratch(key)
        try:
            store.download_file(bucket, key, local, max_bytes=limits.max_upload_bytes)
        except BaseException:
            tmp.cleanup()
            raise
    except StorageError as exc:
        reason = _STORAGE_REASONS.get(exc.cause, Reason.SOURCE_UNREACHABLE)
        raise DataError(reason, str(exc)) from None
    return LocalData(local, url, kind, tmp)


def _fetch_http(url: str, fmt: DataFormat, limits: Limits) -> LocalData:
    import requests  # imported here: it costs seconds at startup and only URLs need it

    kind = _file_type(unquote(urlparse(url).path), fmt, url)
    tmp, local = _scratch(unquote(urlparse(url).path))
    try:
        with requests.get(url, stream=True, timeout=_HTTP_TIMEOUT) as response:
            if response.status_code == 404:
                raise DataError(Reason.SOURCE_NOT_FOUND, f"{url}: not found (HTTP 404)")
            if response.status_code >= 400:
                raise DataError(
                    Reason.SOURCE_UNREACHABLE, f"{url}: HTTP {response.status_code} {response.reason}"
                )
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit():
                _check_size(int(declared), url, limits)
            size = 0
            with open(local, "wb") as out:
                for chunk in response.iter_content(_CHUNK):
                    size += len(chunk)
                    _check_size(size, url, limits)
                    out.write(chunk)
    except requests.RequestException as exc:
        tmp.cleanup()
        raise DataError(
            Reason.SOURCE_UNREACHABLE, f"{url}: cannot download ({type(exc).__name__}: {exc})"
        ) from None
    except BaseException:
        tmp.cleanup()
        raise
    return LocalData(local, url, kind, tmp)
