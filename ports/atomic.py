"""Write a folder under a temporary sibling name and rename it into place, so a failure at any
point leaves no half-written checkpoint at the destination. Single-process use: under multi-host
JAX, Orbax's CheckpointManager does its own commit protocol."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_dir(dst: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yields a path that does not exist yet, next to `dst`; the caller creates and fills it.
    An existing `dst` is an error unless `overwrite`, and is then replaced only after success."""
    dst = Path(dst).absolute()
    if dst.exists() and not overwrite:
        raise FileExistsError(f"destination exists: {dst} (overwrite=True replaces it)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = dst.with_name(f".{dst.name}.partial-{tag}")
    try:
        yield tmp
        if not tmp.is_dir():
            raise FileNotFoundError(f"nothing was written for {dst}")
        if dst.exists():
            if not overwrite:  # appeared while we were writing
                raise FileExistsError(f"destination exists: {dst} (overwrite=True replaces it)")
            old = dst.with_name(f".{dst.name}.replaced-{tag}")
            os.rename(dst, old)
            os.rename(tmp, dst)
            shutil.rmtree(old)
        else:
            os.rename(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
