"""Size limits that keep one upload from exhausting a runner pod's memory or disk."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


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


def human_size(n: int) -> str:
    if n >= MIB:
        return f"{n / MIB:.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} bytes"
