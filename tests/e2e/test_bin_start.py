"""bin/start stops its whole process tree (issue 15, finding 4): when one of its processes dies, even a
qcluster main process killed with SIGKILL, bin/start stops the others and exits only once no process it
started, nor any process those started, is left."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import process_tree

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_processes(sid: int) -> set[int]:
    alive = set()
    for pid in process_tree():
        with contextlib.suppress(OSError):
            if os.getsid(pid) == sid and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                alive.add(pid)
    return alive


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def cmdline_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


@pytest.mark.timeout(240)
def test_sigkill_of_the_copy_cluster_stops_bin_start_and_its_whole_tree(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "Q_CLUSTER_NAME", "Q_NAME")}
    env.update(
        IMAPCOPIER_DATA_DIR=str(tmp_path / "data"),
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_WORKERS="1",
        Q_WORKERS="2",
        STOP_GRACE_SECONDS="30",
    )
    log = (tmp_path / "start.log").open("wb")
    start = subprocess.Popen(
        ["bash", str(ROOT / "bin" / "start"), "--no-install"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert start.poll() is None, (tmp_path / "start.log").read_text()
            assert time.monotonic() < deadline, "bin/start did not come up:\n" + (tmp_path / "start.log").read_text()
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
                # django-q2 logs "Q Cluster <name> running." once a cluster's workers are up.
                if (tmp_path / "start.log").read_text(errors="replace").count(" running.") >= 2:
                    break
            time.sleep(0.5)
        mains = [pid for pid, ppid in process_tree().items() if ppid == start.pid and "qcluster" in cmdline_of(pid)]
        (copy_main,) = [pid for pid in mains if "Q_CLUSTER_NAME" not in environ_of(pid)]
        before = session_processes(start.pid)
        assert len(before) >= 10  # bin/start, gunicorn x2, two clusters of main + sentinel + workers + pusher + monitor

        os.kill(copy_main, signal.SIGKILL)
        assert start.wait(90) == 0
        # bin/start has exited: nothing it started is left, the killed cluster's orphans included.
        assert session_processes(start.pid) == set(), [cmdline_of(p) for p in session_processes(start.pid)]
    finally:
        if start.poll() is None:
            start.send_signal(signal.SIGTERM)
            start.wait(60)
        for pid in session_processes(start.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        log.close()
