"""Safe zip handling: judge an upload by its central directory before reading any member.

An uploaded zip is untrusted. Members that would land outside the extraction folder, symlinks,
encrypted members and archives that expand far beyond their size are refused outright; the data
file is then streamed from the archive (nothing is extracted to disk but parquet, which needs
random access).
"""

from __future__ import annotations

import posixpath
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kaizen_runner.data.formats import DataFormat, FileType, file_type_of
from kaizen_runner.data.issues import DataError, Reason
from kaizen_runner.data.limits import Limits, human_size

_IGNORED_PREFIXES = ("__MACOSX/",)


def _is_unsafe_name(name: str) -> bool:
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        return True
    return ".." in PurePosixPath(unified).parts


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    # Unix mode bits live in the high 16 bits of external_attr; refuse them whatever system made the zip.
    return stat.S_ISLNK(info.external_attr >> 16)


def check_archive(path: Path, name: str, limits: Limits) -> list[zipfile.ZipInfo]:
    """Return the archive's file entries, or raise DataError if the archive is unsafe or broken."""
    if not zipfile.is_zipfile(path):
        raise DataError(Reason.BAD_ARCHIVE, f"{name}: not a zip archive")
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(Reason.BAD_ARCHIVE, f"{name}: broken zip archive ({exc})") from None
    if len(infos) > limits.max_zip_members:
        raise DataError(
            Reason.ZIP_BOMB,
            f"{name}: {len(infos)} entries; an upload may hold at most {limits.max_zip_members}",
        )
    seen: set[str] = set()
    total = 0
    for info in infos:
        if _is_unsafe_name(info.filename):
            raise DataError(
                Reason.UNSAFE_ARCHIVE, f"{name}: entry {info.filename!r} points outside the archive's folder"
            )
        if _is_symlink(info):
            raise DataError(Reason.UNSAFE_ARCHIVE, f"{name}: entry {info.filename!r} is a symbolic link")
        if info.flag_bits & 0x1:
            raise DataError(Reason.BAD_ARCHIVE, f"{name}: entry {info.filename!r} is encrypted")
        if info.filename in seen:
            raise DataError(Reason.UNSAFE_ARCHIVE, f"{name}: entry {info.filename!r} appears twice")
        seen.add(info.filename)
        total += info.file_size
        if info.file_size >= limits.zip_ratio_min_bytes and info.file_size > limits.max_zip_ratio * max(
            info.compress_size, 1
        ):
            raise DataError(
                Reason.ZIP_BOMB,
                f"{name}: entry {info.filename!r} expands {human_size(info.compress_size)} to "
                f"{human_size(info.file_size)} (more than {limits.max_zip_ratio}x)",
            )
    if total > limits.max_zip_uncompressed_bytes:
        raise DataError(
            Reason.ZIP_BOMB,
            f"{name}: expands to {human_size(total)}; "
            f"at most {human_size(limits.max_zip_uncompressed_bytes)} is allowed",
        )
    return [info for info in infos if not info.is_dir()]


def _data_type(member: str) -> FileType | None:
    if member.startswith(_IGNORED_PREFIXES) or PurePosixPath(member).name.startswith("."):
        return None
    try:
        kind = file_type_of(member)
    except DataError:
        return None
    return None if kind is FileType.ZIP else kind


@dataclass(frozen=True)
class DataMember:
    """The one data file inside an archive; image paths in records resolve against its folder."""

    name: str
    file_type: FileType

    @property
    def folder(self) -> str:
        return posixpath.dirname(self.name)


def find_data_member(
    infos: list[zipfile.ZipInfo], fmt: DataFormat, allowed: frozenset[FileType], name: str
) -> DataMember:
    """Pick the data file: the only one of an allowed type, else the one called `train.*`."""
    candidates = [
        DataMember(info.filename, kind)
        for info in infos
        if (kind := _data_type(info.filename)) is not None and kind in allowed
    ]
    if len(candidates) > 1:
        named_train = [c for c in candidates if PurePosixPath(c.name).stem == "train"]
        candidates = named_train if len(named_train) == 1 else candidates
    if not candidates:
        kinds = ", ".join(sorted(t.value for t in allowed))
        raise DataError(
            Reason.BAD_ARCHIVE,
            f"{name}: the archive holds no {fmt.value} data file (expected one of: {kinds})",
        )
    if len(candidates) > 1:
        listed = ", ".join(c.name for c in candidates[:5])
        raise DataError(
            Reason.BAD_ARCHIVE,
            f"{name}: the archive holds several data files ({listed}); keep one, or name it train.<ext>",
        )
    return candidates[0]
