"""Build the runner image from ``runner-image/Dockerfile`` without a daemon or a registry, and import
it into the real node's containerd.

Stages, each timed and cached:

1. **base**: Debian bookworm with python3 (3.11) and apt, made by ``mmdebstrap`` from Debian's
   mirrors, kept as a tarball and committed to buildah's storage as ``kaizen.local/debian-base:<key>``.
   Production builds use a CUDA base instead (the Dockerfile's ``BASE_IMAGE`` default).
2. **runner**: ``buildah build --isolation chroot`` of the real Dockerfile on that base, tagged
   ``kaizen.local/runner:<key>``; the key hashes the Dockerfile, every file it copies, the base and
   the build arguments, so any change to them (dependency pins live in pyproject.toml) makes a new one.
   The Dockerfile's uv cache mount is pointed at the host's uv cache, which already holds the pinned
   wheels (torch with its CUDA libraries is most of the image's size), so nothing big is downloaded.
3. **import** (``kaizen_local.node.imagestream``): the layers the node's containerd lacks, replayed
   from buildah's storage straight into ``ctr images import`` (containerd's root persists, so this
   happens once per key, and after a code change it moves only the changed layers).

    .venv/bin/python -m kaizen_local.runnerimage     # build (or find) the image; prints each stage's time
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from kaizen_local.paths import CACHE_DIR, REPO_ROOT

DOCKERFILE = REPO_ROOT / "runner-image" / "Dockerfile"
IMAGE_DIR = CACHE_DIR / "images"
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("ca-certificates", "python3", "python3-venv")
UV_CACHE_ID = "kaizen-uv"  # the Dockerfile's cache mount id
BUILD_CA_PATH = "/run/kaizen-build-ca.crt"
BUILD_ARGS = {"UV_COMPILE_BYTECODE": "1"}
RUNNER_REPOSITORY = "kaizen.local/runner"
KEEP_RUNNER_TAGS = 3
TOOLS = {"buildah": "buildah", "mmdebstrap": "mmdebstrap"}
DEBIAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageBuildError(RuntimeError):
    """A build step failed; the message carries the end of its output."""


def unavailable_reason() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "building the runner image needs root on Linux (buildah, mmdebstrap)"
    if missing := sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None}):
        return f"building the runner image needs the Debian packages {' '.join(missing)} (tools/dev.sh setup)"
    return None


def _run(*command: str, env: dict[str, str] | None = None, log: Path | None = None) -> str:
    """Run a build command; its output goes to ``log`` when given (buildah's is long)."""
    if log is not None:
        with log.open("ab") as out:
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        if done.returncode:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise ImageBuildError(f"{command[0]} {command[1]} failed ({log}):\n{tail}")
        return ""
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode:
        raise ImageBuildError(f"{' '.join(command[:3])} failed: {(result.stderr or result.stdout)[-3000:]}")
    return result.stdout


def copied_paths(dockerfile: Path = DOCKERFILE) -> list[str]:
    """Sources of the Dockerfile's COPY instructions, relative to the repository root."""
    sources: list[str] = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words and words[0] == "COPY" and not any(w.startswith("--from") for w in words):
            sources += words[1:-1]
    return sources


def _hash_tree(digest: hashlib._Hash, path: Path) -> None:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if "__pycache__" not in file.parts:
            digest.update(str(file.relative_to(REPO_ROOT)).encode() + b"\0" + file.read_bytes())


def base_key() -> str:
    digest = hashlib.sha256(f"{BASE_SUITE} {' '.join(BASE_PACKAGES)}".encode())
    return digest.hexdigest()[:16]


def runner_key(base_reference: str) -> str:
    """What the image is made of: the Dockerfile, what it copies, the base and the build arguments."""
    digest = hashlib.sha256(f"{base_reference} {sorted(BUILD_ARGS.items())}".encode())
    _hash_tree(digest, DOCKERFILE)
    for source in copied_paths():
        _hash_tree(digest, REPO_ROOT / source)
    return digest.hexdigest()[:16]


def _buildah_has(reference: str) -> bool:
    found = subprocess.run(["buildah", "inspect", "--type", "image", reference], capture_output=True)
    return found.returncode == 0


class RunnerImageBuild:
    """The three stages; ``phase_seconds`` says where the time went (0 for a stage found cached)."""

    def __init__(self, work_dir: Path = IMAGE_DIR, log: Callable[[str], None] = print) -> None:
        self.work_dir = work_dir
        self.log = log
        self.phase_seconds: dict[str, float] = {}
        self.build_log = work_dir / "buildah.log"

    def _timed(self, name: str, step: Callable[[], object]) -> None:
        started = time.monotonic()
        step()
        self.phase_seconds[name] = round(time.monotonic() - started, 1)
        self.log(f"runner image: {name} ({self.phase_seconds[name]}s)")

    def base(self) -> str:
        """The Debian base in buildah's storage; its reference."""
        reference = f"kaizen.local/debian-base:{base_key()}"
        if _buildah_has(reference):
            return reference
        self.work_dir.mkdir(parents=True, exist_ok=True)
        tarball = self.work_dir / f"debian-base-{base_key()}.tar"
        if not tarball.is_file():
            partial = tarball.with_suffix(".partial")
            include = ",".join(BASE_PACKAGES)
            command = ["mmdebstrap", "--quiet", "--variant=apt", f"--include={include}", BASE_SUITE]
            self._timed("base rootfs (mmdebstrap)", lambda: _run(*command, str(partial), log=self.build_log))
            partial.rename(tarball)

        def commit() -> None:
            container = _run("buildah", "from", "scratch").strip()
            try:
                _run("buildah", "add", container, str(tarball), "/")
                _run("buildah", "config", "--env", f"PATH={DEBIAN_PATH}", "--cmd", "/bin/bash", container)
                _run("buildah", "commit", "--quiet", container, reference)
            finally:
                _run("buildah", "rm", container)

        self._timed("base image (buildah commit)", commit)
        return reference

    def runner(self, base_reference: str) -> str:
        """The runner image in buildah's storage, built from the Dockerfile unless there already."""
        reference = f"{RUNNER_REPOSITORY}:{runner_key(base_reference)}"
        if _buildah_has(reference):
            return reference
        self.work_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "TMPDIR": str(self._uv_cache_mount_parent())}
        args = [f"--build-arg={name}={value}" for name, value in BUILD_ARGS.items()]
        host_ca = os.environ.get("SSL_CERT_FILE")
        if host_ca and Path(host_ca).is_file():  # the host trusts a proxy's CA: so must the build
            args += [
                f"--volume={host_ca}:{BUILD_CA_PATH}:ro",
                f"--build-arg=PIP_CERT={BUILD_CA_PATH}",
                f"--build-arg=SSL_CERT_FILE={BUILD_CA_PATH}",
            ]
        command = [
            "buildah", "build", "--isolation", "chroot", "--layers", "--pull-never",
            "--file", str(DOCKERFILE), "--build-arg", f"BASE_IMAGE={base_reference}", *args,
            "--tag", reference, str(REPO_ROOT),
        ]  # fmt: skip
        self._timed("runner image (buildah build)", lambda: _run(*command, env=env, log=self.build_log))
        self._remove_older(reference)
        return reference

    def _remove_older(self, reference: str) -> None:
        """Runner tags beyond the newest KEEP_RUNNER_TAGS, and the layers only they used (gigabytes when
        the dependencies changed). Several worktrees may share this machine's buildah storage, so the
        newest few stay; the build's cached intermediate layers stay too."""
        listing = _run("buildah", "images", "--format", "{{.Name}}:{{.Tag}}|{{.CreatedAtRaw}}")
        runner_tags = sorted(
            (line.split("|", 1) for line in listing.splitlines() if line.startswith(f"{RUNNER_REPOSITORY}:")),
            key=lambda tag_created: tag_created[1],
            reverse=True,
        )
        if older := [tag for tag, _ in runner_tags[KEEP_RUNNER_TAGS:] if tag != reference]:
            _run("buildah", "rmi", *older)
            try:
                _run("buildah", "rmi", "--prune")
            except ImageBuildError as err:  # a build running (or killed) elsewhere holds a layer
                self.log(f"runner image: old layers stay for now ({err})")

    def _uv_cache_mount_parent(self) -> Path:
        """buildah keeps cache mounts under $TMPDIR/buildah-cache/<id> (newer releases add -<uid>); a
        symlink there makes the Dockerfile's uv cache the host's."""
        parent = self.work_dir / "buildah-tmp"
        host_cache = Path(os.environ.get("UV_CACHE_DIR") or Path.home() / ".cache" / "uv")
        host_cache.mkdir(parents=True, exist_ok=True)
        for mounts in (parent / "buildah-cache", parent / f"buildah-cache-{os.getuid()}"):
            mounts.mkdir(parents=True, exist_ok=True)
            link = mounts / UV_CACHE_ID
            if link.is_symlink() and link.readlink() == host_cache:
                continue
            if link.is_dir() and not link.is_symlink():
                shutil.rmtree(link)  # a cache of its own from before: the host's replaces it
            link.unlink(missing_ok=True)
            link.symlink_to(host_cache)
        return parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.parse_args(argv)
    if reason := unavailable_reason():
        print(reason, file=sys.stderr)
        return 2
    build = RunnerImageBuild()
    started = time.monotonic()
    reference = build.runner(build.base())
    print(f"{reference} ready in {time.monotonic() - started:.1f}s: {build.phase_seconds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
