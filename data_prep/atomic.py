"""The one way this project writes a file: completely or not at all.

``atomic_path(path)`` yields a temporary path beside ``path``; when the block ends without an
exception the temporary file replaces ``path`` in one ``os.replace`` (atomic on POSIX), otherwise
it is removed. A reader (or a run killed mid-write) never sees half a file.

Example
-------
>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> with atomic_path(folder / "a.txt") as tmp:
...     _ = tmp.write_text("complete")
>>> (folder / "a.txt").read_text()
'complete'
>>> try:
...     with atomic_path(folder / "a.txt") as tmp:
...         _ = tmp.write_text("half")
...         raise RuntimeError("killed")
... except RuntimeError:
...     pass
>>> (folder / "a.txt").read_text(), sorted(p.name for p in folder.iterdir())
('complete', ['a.txt'])
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path):
    """A temporary path that replaces ``path`` when the block succeeds (parents are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path, data, default=None) -> Path:
    """Writes ``data`` as indented JSON (with a final newline), atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=default) + "\n", encoding="utf-8")
    return Path(path)
