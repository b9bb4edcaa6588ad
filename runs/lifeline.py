"""A django-q2 cluster's processes stop when its main process dies (issue 15, finding 6).

django-q2's main process (`manage.py qcluster`) forks a sentinel, which forks the workers, the pusher
and the monitor. SIGTERM to the main process stops them all in order; SIGKILL (or the OOM killer) of
the main process does not: the sentinel goes on with parent pid 1, keeps taking jobs, and after a
restart two clusters share the queue. Nothing in django-q2 watches for that, so this module does:

- install(), called in the main process before the cluster starts (runs' `qcluster` command), has
  every process forked from it start a small watcher thread;
- in the sentinel, the watcher sees its parent change and sets the cluster's stop event, exactly what
  SIGTERM to the main process would do: the pusher stops, jobs taken but not started go back to the
  queue, a copy in flight stops after its batch and is recorded interrupted (runs/jobs.py), and the
  sentinel exits once its workers have;
- in a worker, pusher or monitor, the watcher notes that the main process is gone (main_gone(), so a
  job can say why it stopped), and if its own parent (the sentinel) dies it sends itself SIGTERM each
  second: a copy in flight takes that as a stop after its batch, and an idle process ends.

Linux-specific where it reads /proc; elsewhere only the sentinel's own check works.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

from runs import q2

logger = logging.getLogger(__name__)

CHECK_SECONDS = 1.0

_main_gone = threading.Event()
_signalled_itself = threading.Event()  # this process sent itself SIGTERM (_watch_as_descendant)
_installed_for: int | None = None


def main_gone() -> bool:
    """True in a cluster process once it has seen the cluster's main process die."""
    return _main_gone.is_set()


def signalled_itself() -> bool:
    """True once this process has sent itself SIGTERM because its sentinel died: a SIGTERM it got is then
    not (only) a process manager's stop."""
    return _signalled_itself.is_set()


def install() -> None:
    """Call in the qcluster main process, before Cluster.start(): every process forked from here on
    watches its parents. Calling it twice in one process does nothing more."""
    global _installed_for
    if _installed_for == os.getpid():
        return
    _installed_for = main_pid = os.getpid()
    os.register_at_fork(after_in_child=lambda: _start_watcher(main_pid))


def _start_watcher(main_pid: int) -> None:
    _main_gone.clear()
    _signalled_itself.clear()
    parent = os.getppid()
    target = _watch_as_sentinel if parent == main_pid else _watch_as_descendant
    threading.Thread(target=target, args=(main_pid, parent), name="lifeline", daemon=True).start()


def parent_of(pid: int) -> int | None:
    """The parent pid of `pid` from /proc (field 4 of /proc/<pid>/stat), or None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after its last ")".
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[1]) if len(fields) > 1 else None


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet waited for, does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[-1].split()
    return bool(fields) and fields[0] != "Z"


def _watch_as_sentinel(main_pid: int, _parent: int) -> None:
    stop = threading.Event()
    while not stop.wait(CHECK_SECONDS):
        if os.getppid() == main_pid:
            continue
        _main_gone.set()
        event = _sentinel_stop_event()
        logger.warning(
            "qcluster main process %s is gone: stopping this cluster after the jobs in flight",
            main_pid,
            extra={"event": "cluster.orphaned", "main_pid": main_pid},
        )
        if event is not None:
            event.set()
        else:
            os.kill(os.getpid(), signal.SIGTERM)  # the sentinel's SIGTERM is fatal; its workers follow
        return


def _watch_as_descendant(main_pid: int, parent: int) -> None:
    stop = threading.Event()
    while not stop.wait(CHECK_SECONDS):
        if os.getppid() != parent:
            # The sentinel itself is gone: nobody will stop this process, so it stops itself. A copy
            # in flight turns SIGTERM into "stop after this batch"; an idle process just ends.
            if not _alive(main_pid):
                _main_gone.set()
            _signalled_itself.set()
            os.kill(os.getpid(), signal.SIGTERM)
        elif not _main_gone.is_set() and parent_of(parent) not in (main_pid, None):
            _main_gone.set()  # the sentinel will stop the cluster; jobs can now say why


def _sentinel_stop_event() -> object | None:
    """The stop event of the Sentinel running on this process's main thread, or None."""
    return q2.sentinel_stop_event_in(sys._current_frames().get(threading.main_thread().ident))
