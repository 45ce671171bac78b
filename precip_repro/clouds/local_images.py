"""A local cloud's images: ``default`` (the host's own tree) or a directory whose tree is
layered over the host's in each instance's view."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["image_digest", "image_problem", "is_local_image"]


def image_problem(image_id: str) -> str | None:
    """Why the local cloud cannot start ``image_id``, or None when it can."""
    if image_id == "default" or Path(image_id).expanduser().is_dir():
        return None
    return (
        f"image {image_id!r} is neither 'default' nor a directory; a local image is a "
        "directory whose tree is layered over the instance's view"
    )


def is_local_image(image_id: str) -> bool:
    """Whether ``image_id`` names a local cloud's image (no EC2-style cloud has one so
    named): ``default`` or a path."""
    return image_id == "default" or "/" in image_id or image_id.startswith("~")


def image_digest(image: Path) -> str:
    """A digest of a directory tree: paths, modes, file contents and link targets."""
    outer = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(image):
        dirnames.sort()
        for name in sorted([*dirnames, *filenames]):
            path = Path(dirpath) / name
            rel = path.relative_to(image).as_posix()
            info = path.lstat()
            outer.update(f"{rel}\0{info.st_mode:o}\0".encode())
            if path.is_symlink():
                outer.update(str(path.readlink()).encode() + b"\0")
            elif path.is_file():
                with path.open("rb") as f:
                    outer.update(hashlib.file_digest(f, "sha256").digest())
    return outer.hexdigest()
