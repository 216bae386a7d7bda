"""tests/script_server.py: a script run in a forked child of the server ends as in a fresh
interpreter (exit status, streams, arguments, working directory, environment)."""

import os
import subprocess
import sys

import pytest
from recipe_runs import REPO_ROOT, _script_server, run_script

PROBE = """
import os, sys
print("argv", sys.argv[1:])
print("cwd", os.getcwd())
print("main", __name__)
print("variable", os.environ.get("FOCALNET_PROBE"))
mode = sys.argv[1]
print("to stderr", file=sys.stderr)
if mode == "message":
    sys.exit("one line for the user")
if mode == "code":
    sys.exit(3)
if mode == "raise":
    raise ValueError("boom")
"""


@pytest.fixture
def probe(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text(PROBE)
    return path


@pytest.mark.parametrize("mode", ["plain", "message", "code", "raise"])
def test_a_forked_run_ends_as_a_fresh_interpreter(probe, mode):
    server = _script_server()
    assert server.serves(os.environ), server.differences(os.environ)
    forked = server.run(str(probe), [mode, "x y"], timeout=120)
    fresh = subprocess.run(
        [sys.executable, str(probe), mode, "x y"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert forked.returncode == fresh.returncode == {"plain": 0, "code": 3}.get(mode, 1)
    assert forked.stdout == fresh.stdout
    assert f"argv ['{mode}', 'x y']" in forked.stdout and f"cwd {REPO_ROOT}" in forked.stdout
    assert "main __main__" in forked.stdout
    # a traceback names runpy's frames too; its first and last lines are the same
    first, last = forked.stderr.splitlines(), fresh.stderr.splitlines()
    assert first[0] == last[0] == "to stderr" and first[-1] == last[-1]
    if mode == "raise":
        assert last[-1] == "ValueError: boom"


def test_another_environment_runs_in_a_fresh_interpreter(probe, monkeypatch):
    assert "variable None" in run_script(str(probe), ["plain"]).stdout
    monkeypatch.setenv("FOCALNET_PROBE", "seen")
    assert _script_server().differences(os.environ) == ["FOCALNET_PROBE"]
    with pytest.warns(UserWarning, match=r"fresh interpreter.*FOCALNET_PROBE"):
        assert "variable seen" in run_script(str(probe), ["plain"]).stdout
    env = {**os.environ, "FOCALNET_PROBE": "given"}
    assert "variable given" in run_script(str(probe), ["plain"], env=env).stdout
