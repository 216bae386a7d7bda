"""pytest settings for every test and doctest here (tests/conftest.py holds the fixtures).

Temporary files go under pytest's own temporary folder, which pytest prunes to its last three
runs, instead of the system's: the doctests' ``tempfile.mkdtemp()`` folders, and those of the
entry scripts the tests start, would otherwise stay behind in /tmp after every run of the suite.
"""

import os
import tempfile

import pytest


@pytest.fixture(autouse=True, scope="session")
def temporary_files_under_pytest(tmp_path_factory):
    """Points ``tempfile`` (this process) and ``TMPDIR`` (the processes tests start) at a folder
    under pytest's base temporary folder for the whole session."""
    folder = str(tmp_path_factory.mktemp("tempfile"))
    previous = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = folder
    os.environ["TMPDIR"] = folder
    yield folder
    tempfile.tempdir = previous[0]
    if previous[1] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = previous[1]
