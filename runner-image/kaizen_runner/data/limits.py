"""Size limits that keep one upload from exhausting a runner pod's memory or disk.

The 100 MB file limit is the console's upload limit (SPEC §2), the default for what a user uploads
and previews. A training run reads data the platform already holds (a Data Hub dataset may be far
larger), so it uses `dataset_limits()`: the same archive limits, and a file limit from
$KAIZEN_MAX_DATASET_BYTES, unlimited when that is unset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

MIB = 1024 * 1024
MAX_DATASET_ENV = "KAIZEN_MAX_DATASET_BYTES"


@dataclass(frozen=True)
class Limits:
    """`max_upload_bytes` is SPEC §2's 100 MB per upload; the zip limits stop archive bombs."""

    max_upload_bytes: int = 100 * MIB
    max_zip_members: int = 100_000
    max_zip_uncompressed_bytes: int = 2048 * MIB
    # Text compresses ~10x and flat images ~50x; a ratio past this is an archive bomb.
    max_zip_ratio: int = 200
    # Small members may compress far better than `max_zip_ratio` without being a risk.
    zip_ratio_min_bytes: int = MIB
    # One image is read whole to check it; this bounds that read.
    max_image_bytes: int = 64 * MIB


DEFAULT_LIMITS = Limits()


def dataset_limits() -> Limits:
    """The limits for a training dataset: no file size limit unless $KAIZEN_MAX_DATASET_BYTES sets one."""
    raw = os.environ.get(MAX_DATASET_ENV, "").strip()
    if raw and not raw.isdigit():
        raise ValueError(f"{MAX_DATASET_ENV}={raw!r} is not a number of bytes")
    return replace(DEFAULT_LIMITS, max_upload_bytes=int(raw) if raw else 1 << 62)


def human_size(n: int) -> str:
    if n >= MIB:
        return f"{n / MIB:.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} bytes"
