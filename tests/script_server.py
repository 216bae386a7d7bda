"""A Python with the recipes already imported, running entry scripts in forked children.

The tests run the entry scripts as a user would (``python train_classifier.py ARGS`` in the
repository) about a hundred times. A fresh interpreter spends 5-8 s of each run importing torch,
SpeechBrain, transformers and the recipes on a 2-core CPU (AVX2-only AMD EPYC: 6 s), 10 minutes
of a suite run. This server imports them once and forks one child per run; the child is a
separate process that runs the script as ``__main__`` with its own arguments, working directory
(the repository), environment, standard streams (files) and exit status, as the fresh
interpreter would, without the start-up. ``tests/recipe_runs.run_script`` talks to it and falls
back to a fresh interpreter whenever the run's environment differs from the server's (libraries
read some variables, e.g. ``HF_HUB_OFFLINE``, once at import), or when
``FOCALNET_TESTS_FRESH_PROCESSES=1`` asks for fresh interpreters throughout.

Protocol: one JSON object per line. The server answers ``{"ready": ...}`` once imported; then
for each request ``{"script", "args", "stdout", "stderr", "env"}`` it answers ``{"pid"}`` when
the child starts and ``{"returncode"}`` (``subprocess``'s convention: minus the signal number
for a child killed by a signal) when it ends. It stops at the end of its input.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import sys
import threading
import traceback
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# The libraries, then every entry script as a module (each runs only under ``__main__``), which
# imports the recipes; anything else is imported by the child as usual.
LIBRARIES = ("torch", "torchaudio", "speechbrain", "transformers", "captum.attr", "matplotlib")


def _reply(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _exit_code(exit: SystemExit) -> int:
    """The exit status Python gives ``sys.exit(code)``: None is 0, an int itself, anything
    else is printed to stderr and is 1."""
    if exit.code is None:
        return 0
    if isinstance(exit.code, int):
        return exit.code
    print(exit.code, file=sys.stderr)
    return 1


def _run_child(request: dict) -> None:
    """In the forked child: ``python SCRIPT ARGS`` in the repository, then ``os._exit``."""
    code = 1
    try:
        stdin = os.open(os.devnull, os.O_RDONLY)
        stdout = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        stderr = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(REPO_ROOT)
        script = request["script"]
        sys.argv = [script, *request["args"]]
        sys.path[0] = str(REPO_ROOT)  # as ``python script.py`` puts the script's folder first
        import runpy

        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as exit:
            code = _exit_code(exit)
        except BaseException:
            sys.excepthook(*sys.exc_info())
            code = 1
        atexit._run_exitfuncs()  # what the interpreter runs at its exit
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def main() -> None:
    os.chdir(REPO_ROOT)
    sys.path.insert(0, str(REPO_ROOT))
    for name in (*LIBRARIES, *sorted(path.stem for path in REPO_ROOT.glob("*.py"))):
        importlib.import_module(name)
    # A fork copies one thread only: the server must not have started any.
    _reply({"ready": True, "threads": threading.active_count(), "pid": os.getpid()})
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _run_child(request)
        _reply({"pid": pid})
        _, status = os.waitpid(pid, 0)
        _reply({"returncode": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    main()
