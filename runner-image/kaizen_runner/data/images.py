"""Image references of ShareGPT_Image records: resolve them against the upload, check they are images."""

from __future__ import annotations

import io
import posixpath
import zipfile
import zlib
from typing import Any

from PIL import Image

from kaizen_runner.data.issues import Reason
from kaizen_runner.data.limits import human_size
from kaizen_runner.data.readers import Media
from kaizen_runner.data.records import ImageRef

IMAGE_TOKEN = "<image>"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
_IMAGE_FORMATS = frozenset({"PNG", "JPEG"})

Problem = tuple[Reason, str]
# What reading an image out of the upload, and decoding it, raise for a broken file.
_READ_ERRORS = (KeyError, OSError, zipfile.BadZipFile, zlib.error)
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
IMAGE_ERRORS = _READ_ERRORS + _DECODE_ERRORS


def resolve_image(value: Any, media: Media, position: int) -> ImageRef | Problem:
    """Turn one entry of a record's `images` into a reference, or say why it cannot be one."""
    if isinstance(value, dict) and ("bytes" in value or "path" in value):
        data, path = value.get("bytes"), value.get("path")
        if isinstance(data, bytes | bytearray) and data:
            return ImageRef(path if isinstance(path, str) and path else f"image {position}", data=bytes(data))
        value = path
    if isinstance(value, bytes | bytearray):
        return (
            ImageRef(f"image {position}", data=bytes(value)) if value else (Reason.MISSING_IMAGE, "no bytes")
        )
    if not isinstance(value, str):
        return Reason.WRONG_TYPE, f"must be a path (string) or image bytes, not {type(value).__name__}"
    if not value.strip():
        return Reason.MISSING_IMAGE, "the image path is empty"
    if posixpath.splitext(value.lower())[1] not in IMAGE_SUFFIXES:
        return Reason.NOT_AN_IMAGE, f"{value!r} is not a .png, .jpg or .jpeg file"
    if media.zip_path is None:
        where = "embedded in the parquet file" if media.embedded else "in a zip with the data file"
        return Reason.MISSING_IMAGE, f"{value!r}: images must be {where}, not paths"
    member = _member(value, media)
    if member is None:
        return Reason.MISSING_IMAGE, f"{value!r} is not in the archive"
    if media.member_sizes[member] > media.max_image_bytes:
        return Reason.IMAGE_TOO_LARGE, f"{value!r} is larger than {human_size(media.max_image_bytes)}"
    return ImageRef(value, zip_path=media.zip_path, member=member)


def _member(path: str, media: Media) -> str | None:
    """The archive entry a record's path names: relative to the data file's folder, else to the root."""
    unified = path.replace("\\", "/")
    if unified.startswith("/"):
        return None
    for base in (media.folder, ""):
        candidate = posixpath.normpath(posixpath.join(base, unified))
        if not candidate.startswith("../") and candidate in media.member_sizes:
            return candidate
    return None


def check_image(ref: ImageRef) -> str | None:
    """None if the reference holds a PNG or JPEG image; otherwise what is wrong with it.

    The image is decoded whole, as training will decode it: a header check (`verify`) passes a
    JPEG cut short, which would then fail the run's dataset conversion instead of skipping a record.
    """
    try:
        data = ref.read_bytes()
    except _READ_ERRORS as exc:
        return f"{ref.name!r} cannot be read ({exc})"
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format
            image.load()
    except _DECODE_ERRORS:
        return f"{ref.name!r} is not a readable PNG or JPEG image"
    if kind not in _IMAGE_FORMATS:
        return f"{ref.name!r} is a {kind} image; use PNG or JPEG"
    return None
