"""Small file-system helpers shared by the build steps."""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator

from coex.lib.errors import CoexError


@contextlib.contextmanager
def atomic_output(path: str, mode: int = 0o644) -> Iterator[str]:
    """Yield a temporary path beside `path`; on success it is chmod'ed and renamed to `path`,
    on any failure it is removed, so `path` is either complete or untouched."""
    path = os.path.abspath(os.fspath(path))
    out_dir = os.path.dirname(path)
    try:
        os.makedirs(out_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".coex-tmp-", dir=out_dir)
    except OSError as e:
        raise CoexError("Cannot write {}: {} ({}).".format(path, e.strerror or e, out_dir))
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
