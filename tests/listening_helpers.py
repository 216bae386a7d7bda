"""Helpers of the listening-test tests: scripted participants and a real server subprocess."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method, url, fields=None):
    """``(status, JSON body)`` of a request to the server (JSON body for POST)."""
    data = None if fields is None else json.dumps(fields).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


class Server:
    """``python listen.py ARGS --port P`` in a subprocess, waited for until it answers."""

    def __init__(self, *args, token="experimenter-token"):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.log = open(os.devnull, "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "listen.py", *args, f"--port={self.port}", f"--token={token}"],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output = []
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"listen.py exited: {self.process.stdout.read()}")
            try:
                with urllib.request.urlopen(f"{self.base}/", timeout=5):
                    return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        raise RuntimeError("listen.py did not answer within 120 s")

    def kill(self):
        """SIGKILL: no clean-up of any kind, as a crash or a pulled plug."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.log.close()

    stop = kill


def trial_conditions(db, participant):
    """``{position: (kind, [conditions in slot order])}`` read from the database: what a
    scripted participant's rule needs (a person hears it; the script reads it)."""
    return {
        position: (kind, json.loads(conditions))
        for position, kind, conditions in db.query(
            "SELECT position, kind, conditions FROM trials WHERE participant = ? ORDER BY position",
            (participant,),
        )
    }
