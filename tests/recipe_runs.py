"""Helpers for tests that run the entry scripts as a user would: tiny, offline, one epoch."""

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

TINY_BACKBONE_CONFIG = {
    "focalnet": "{embed_dim: 8, depths: [1, 1, 1, 1]}",
    "vit": "{hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64}",
    "cnn14": "{width: 2, emb_dim: 64}",  # recipes.backbones.TINY_CNN14
}
# Variables that differ between tests without changing what a script does.
_IGNORED_ENV = ("PYTEST_CURRENT_TEST",)


def tiny_args(hparams_file, backbone, data_folder, output_folder, *extra):
    """Command-line arguments of a tiny, offline, one-epoch run of ``hparams/<hparams_file>``."""
    return [
        f"hparams/{hparams_file}.yaml",
        f"--data_folder={data_folder}",
        f"--output_folder={output_folder}",
        f"--backbone_config={TINY_BACKBONE_CONFIG[backbone]}",
        "--download=False",
        "--n_classes=3",
        "--batch_size=4",
        "--number_of_epochs=1",
        "--n_interpretations=2",
        "--resample_cache=null",
        *extra,
    ]


def _comparable(env):
    return {key: value for key, value in env.items() if key not in _IGNORED_ENV}


class ScriptServer:
    """``tests/script_server.py`` in a subprocess: runs scripts in forked children of a Python
    that has imported the recipes once (see that module)."""

    def __init__(self):
        self.env = dict(os.environ)
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("script_server.py"))],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        ready = self._read(timeout=600)
        if ready.get("threads") != 1:
            self.close()
            raise RuntimeError(f"the script server started threads before forking: {ready}")

    def _read(self, timeout):
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the script server stopped")
        return json.loads(line)

    def differences(self, env):
        """The variables whose values in ``env`` differ from the server's environment."""
        ours, theirs = _comparable(env), _comparable(self.env)
        return sorted(
            key for key in ours.keys() | theirs.keys() if ours.get(key) != theirs.get(key)
        )

    def serves(self, env):
        return self.process.poll() is None and not self.differences(env)

    def run(self, script, args, timeout):
        with tempfile.TemporaryDirectory() as folder:
            out, err = Path(folder) / "stdout", Path(folder) / "stderr"
            request = {
                "script": script,
                "args": [str(arg) for arg in args],
                "stdout": str(out),
                "stderr": str(err),
                "env": dict(os.environ),
            }
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            pid = self._read(timeout=60)["pid"]
            try:
                returncode = self._read(timeout=timeout)["returncode"]
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                self._read(timeout=60)
                raise subprocess.TimeoutExpired(
                    [script, *args], timeout, out.read_text(), err.read_text()
                ) from None
            return subprocess.CompletedProcess(
                [sys.executable, script, *args], returncode, out.read_text(), err.read_text()
            )

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


_server = None


def _script_server():
    global _server
    if _server is None:
        _server = ScriptServer()
        atexit.register(_server.close)
    return _server


def run_script(script, args, timeout=1800, env=None):
    """``python script args`` in the repository; the CompletedProcess (text output).

    Runs in a forked child of the script server (``tests/script_server.py``: the same process
    boundary, arguments, environment, streams and exit status, without 5-8 s of imports) unless
    ``env`` is given or the environment differs from the server's, or
    ``FOCALNET_TESTS_FRESH_PROCESSES=1``: then in a fresh interpreter.

    ``timeout`` only guards against a hang: on a slow or shared CPU the quickstart steps take
    several minutes each.
    """
    fresh = os.environ.get("FOCALNET_TESTS_FRESH_PROCESSES") == "1"
    if env is None and not fresh:
        server = _script_server()
        if server.serves(os.environ):
            return server.run(script, args, timeout)
        warnings.warn(
            f"{script} runs in a fresh interpreter: the environment differs from the script "
            f"server's in {server.differences(os.environ)}",
            stacklevel=2,
        )
    return subprocess.run(
        [sys.executable, script, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
