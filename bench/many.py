"""Many mailboxes (issue 14, items 3 and 5): a task's accounts through a real cluster against the baseline
copying the same accounts 4 at a time, in one invocation, runs taking turns.

    .venv/bin/python -m bench.many --case 10x500 --repeat 3     # 10 mailboxes of 500 messages (~410 MB)
    .venv/bin/python -m bench.many --case 1000x5 --repeat 1     # 1,000 mailboxes of 5 messages

Not a test: nothing here asserts a speed. One private Dovecot (tests/support/dovecot.py, plain IMAP on
loopback), a private SQLite database with the ORM broker (the default installation), and one real
`manage.py qcluster` with Q_WORKERS=4 (--workers). Per run:

- engine: a Task with one Account per source mailbox into fresh destination users; the clock runs from
  orchestrator.start_run() (what "Run now" calls) until the Run is final. Client CPU: the cluster's
  processes (main, workers, their reaped children) during the run, idle polling included.
- baseline: bench/baseline.py (raw sockets, LITERAL+ APPENDs, no state) in 4 processes, each copying its
  share of the accounts one after the other into other fresh users. Client CPU: those 4 processes.

Printed per case: the wall time of each run and its ratio to the baseline run beside it (the machine is
shared: ratios of neighbouring runs are steadier than times), accounts per minute, the client CPU of each,
how busy the two cores were, and from the workers' `account.finished` log lines the per-account
overhead: job taken -> engine called, engine, engine returned -> account run recorded (medians).
Every destination's per-folder message counts are checked against its source.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.run_bench import _TICK, _stat_fields, machine_ticks

REPO = Path(__file__).resolve().parent.parent
CASES = {"10x500": (10, 500), "1000x5": (1000, 5), "200x5": (200, 5), "3x20": (3, 20)}  # 3x20: a quick look
BASELINE_PARALLEL = 4


def _baseline_child() -> int:
    """Copy the accounts given on stdin (JSON list) one after the other with bench/baseline.py."""
    from bench.baseline import copy_account

    messages = 0
    for a in json.load(sys.stdin):
        messages += copy_account(
            a["host"], a["port"], a["src_user"], a["src_password"], a["port"], a["dst_user"], a["dst_password"]
        ).messages
    print(json.dumps({"messages": messages}))
    return 0


def _setup_django(data: Path, workers: int) -> dict[str, str]:
    """A private data directory and SQLite database; returns the environment the cluster gets too."""
    from cryptography.fernet import Fernet

    env = {
        "IMAPCOPIER_DATA_DIR": str(data),
        # DEBUG off as in production (with DEBUG on, Django keeps every query for the debug page).
        "DEBUG": "0",
        "SECRET_KEY": "bench-" + Fernet.generate_key().decode(),
        "IMAPCOPIER_FERNET_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": f"sqlite:///{data}/bench.sqlite3",
        "DJANGO_SETTINGS_MODULE": "imapcopier.settings",
        "LOG_LEVEL": "INFO",
        "LOGIN_LOCKOUT": "0",
        "Q_WORKERS": str(workers),
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    for name in ("REDIS_URL", "Q_NAME", "Q_CLUSTER_NAME"):
        os.environ.pop(name, None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return {**os.environ}


class Cluster:
    """`manage.py qcluster` in its own session; stop() ends it (and only it)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def cpu(self) -> float:
        """CPU seconds of the cluster so far: every live process of its tree and every child one of them
        reaped (a recycled worker is reaped by the sentinel, not by the main process)."""
        return tree_cpu(self.process.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # its own session: only its processes
                self.process.wait(10)
        self._log.close()


def tree_cpu(root: int) -> float:
    """utime + stime + cutime + cstime (proc(5)) of `root` and its live descendants, in seconds."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        fields = _stat_fields(entry) if entry.isdigit() else None
        if fields is not None:
            parents[int(entry)] = int(fields[1])
            times[int(entry)] = sum(int(v) for v in fields[11:15]) / _TICK
    total = 0.0
    for pid in times:
        ancestor, hops = pid, 0
        while ancestor not in (0, 1, root) and hops < 10:
            ancestor, hops = parents.get(ancestor, 0), hops + 1
        if ancestor == root:
            total += times[pid]
    return total


def _make_task(server, sources, destinations, name: str):  # noqa: ANN001
    from tasks.models import Account, Endpoint, Task

    endpoint = Endpoint.objects.create(
        label=f"dovecot {name}", host="127.0.0.1", port=server.imap_port, security="plain", max_connections=200
    )
    task = Task.objects.create(name=name, source=endpoint, destination=endpoint)
    ok = Account.TestStatus.OK
    for source, destination in zip(sources, destinations, strict=True):
        Account.objects.create(
            task=task,
            source_user=source.username,
            source_password=source.password,
            destination_user=destination.username,
            destination_password=destination.password,
            source_test_status=ok,
            destination_test_status=ok,
        )
    return task


def _engine_run(task, cluster: Cluster) -> dict[str, float]:  # noqa: ANN001
    from runs import orchestrator
    from runs.models import Run

    cpu_before = cluster.cpu()
    busy_before, total_before = machine_ticks()
    started = time.perf_counter()
    run = orchestrator.start_run(task.pk, trigger=Run.Trigger.MANUAL)
    while True:
        run.refresh_from_db()
        if not run.is_running:
            break
        if cluster.process.poll() is not None:
            raise SystemExit(f"qcluster died:\n{cluster.log()[-3000:]}")
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    busy_after, total_after = machine_ticks()
    if run.status != Run.Status.DONE:
        raise SystemExit(f"run {run.pk} ended {run.status}: {run.reason}\n{cluster.log()[-3000:]}")
    return {
        "seconds": seconds,
        "cpu": cluster.cpu() - cpu_before,
        "busy": (busy_after - busy_before) / max(1, total_after - total_before),
        "messages": run.copied,
    }


def _baseline_run(server, sources, destinations) -> dict[str, float]:  # noqa: ANN001
    accounts = [
        {
            "host": "127.0.0.1",
            "port": server.imap_port,
            "src_user": s.username,
            "src_password": s.password,
            "dst_user": d.username,
            "dst_password": d.password,
        }
        for s, d in zip(sources, destinations, strict=True)
    ]
    shares = [accounts[i::BASELINE_PARALLEL] for i in range(BASELINE_PARALLEL)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before, total_before = machine_ticks()
    started = time.perf_counter()
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.many", "--baseline-child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=REPO,
            text=True,
        )
        for share in shares
        if share
    ]
    messages = 0
    for child, share in zip(children, shares, strict=False):
        out, _ = child.communicate(json.dumps(share))
        if child.returncode != 0:
            raise SystemExit("baseline failed")
        messages += json.loads(out.strip().splitlines()[-1])["messages"]
    seconds = time.perf_counter() - started
    busy_after, total_after = machine_ticks()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "seconds": seconds,
        "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "busy": (busy_after - busy_before) / max(1, total_after - total_before),
        "messages": messages,
    }


_FINISHED = re.compile(r"event=account\.finished .*?before_copy_s=(\S+) copy_s=(\S+) after_copy_s=(\S+)")


def _overheads(log: str) -> list[tuple[float, float, float]]:
    """(job taken -> engine, engine, engine -> recorded) seconds of every account.finished log line."""
    return [(float(a), float(b), float(c)) for a, b, c in _FINISHED.findall(log)]


def _check(server, sources, destinations, label: str) -> list[str]:  # noqa: ANN001
    from bench.run_bench import _counts

    problems = []
    for source, destination in zip(sources, destinations, strict=True):
        want, got = _counts(server, source), _counts(server, destination)
        if any(got.get(folder) != count for folder, count in want.items()):
            problems.append(f"{label}: {destination.username}: {got} instead of {want}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted(CASES), default="10x500")
    parser.add_argument("--repeat", type=int, default=3, help="paired runs (engine and baseline, taking turns)")
    parser.add_argument("--workers", type=int, default=4, help="Q_WORKERS of the cluster")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--py-spy",
        type=Path,
        help="record the cluster's processes with py-spy (installed apart) into this file (collapsed stacks)",
    )
    parser.add_argument("--baseline-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_child:
        return _baseline_child()

    from bench import corpus
    from bench.run_bench import _revision
    from tests.support.dovecot import Dovecot

    mailboxes, per_mailbox = CASES[args.case]
    workdir = Path(tempfile.mkdtemp(prefix="imapcopier-many-"))
    workdir.chmod(0o755)  # Dovecot's unprivileged processes must reach the directory below
    print(f"case {args.case}: {mailboxes} mailboxes x {per_mailbox} messages; code {_revision()}", flush=True)
    env = _setup_django(workdir / "data", args.workers)
    problems: list[str] = []
    with Dovecot(workdir=workdir / "dovecot") as server:
        started = time.perf_counter()
        sources = []
        total_bytes = 0
        for i in range(mailboxes):
            user = server.add_user(f"src{i}")
            items = corpus.specs(per_mailbox, args.seed + i)
            corpus.load(server, user, items, connections=1 if per_mailbox < 50 else 2)
            total_bytes += sum(len(raw) for _spec, raw in corpus.messages(items))
            sources.append(user)
        print(
            f"corpus: {mailboxes * per_mailbox} messages, {total_bytes / 1e6:.1f} MB, loaded in "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
        cluster = Cluster(env, workdir / "qcluster.log")
        spy = None
        try:
            time.sleep(3)  # the cluster's workers start (Django set up in each)
            if args.py_spy:
                spy = subprocess.Popen(
                    ["py-spy", "record", "--subprocesses", "--nonblocking", "--gil", "--format", "raw", "--rate", "100"]
                    + ["-o", str(args.py_spy), "-p", str(cluster.process.pid)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            # Warm-up, untimed: the baseline reads every source once, so that the first timed run (the engine's)
            # does not alone pay for the server's first reading of the corpus (Dovecot fills its caches then).
            warm = [server.add_user(f"warm-{i}") for i in range(mailboxes)]
            _baseline_run(server, sources, warm)
            print("warm-up: every source read once by the baseline (untimed)", flush=True)
            engine_runs, baseline_runs = [], []
            for repeat in range(args.repeat):
                order = ["engine", "baseline"] if repeat % 2 == 0 else ["baseline", "engine"]
                for kind in order:
                    destinations = [server.add_user(f"{kind[0]}{repeat}-{i}") for i in range(mailboxes)]
                    if kind == "engine":
                        task = _make_task(server, sources, destinations, f"bench {repeat}")
                        figures = _engine_run(task, cluster)
                        engine_runs.append(figures)
                    else:
                        figures = _baseline_run(server, sources, destinations)
                        baseline_runs.append(figures)
                    problems += _check(server, sources, destinations, f"{kind} run {repeat + 1}")
                    print(
                        f"run {repeat + 1} {kind:8}: {figures['seconds']:7.2f} s, {figures['messages']} messages, "
                        f"client CPU {figures['cpu']:6.2f} s, machine {figures['busy']:.0%} busy",
                        flush=True,
                    )
            overheads = _overheads(cluster.log())
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                spy.wait(60)
            cluster.stop()
    ratios = [e["seconds"] / b["seconds"] for e, b in zip(engine_runs, baseline_runs, strict=True)]
    cpu_ratios = [e["cpu"] / b["cpu"] for e, b in zip(engine_runs, baseline_runs, strict=True) if b["cpu"]]

    def med(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    print()
    print(f"case {args.case}, {args.repeat} paired run(s), cluster Q_WORKERS={args.workers}, baseline 4 at a time:")
    print("  engine/baseline wall per run: " + ", ".join(f"{r:.2f}" for r in ratios) + f"; median {med(ratios):.2f}")
    print(
        "  engine/baseline client CPU per run: "
        + ", ".join(f"{r:.2f}" for r in cpu_ratios)
        + f"; median {med(cpu_ratios):.2f}"
    )
    for label, runs in (("engine", engine_runs), ("baseline", baseline_runs)):
        seconds = med([r["seconds"] for r in runs])
        print(
            f"  {label:8} median {seconds:7.2f} s = {mailboxes / seconds * 60:7.0f} accounts/min, "
            f"client CPU {med([r['cpu'] for r in runs]):6.2f} s, machine {med([r['busy'] for r in runs]):.0%} busy"
        )
    if overheads:
        before, copy, after = zip(*overheads, strict=True)
        print(
            f"  per account ({len(overheads)} jobs), median / p90 seconds: job taken -> engine "
            f"{med(list(before)):.3f} / {_p90(before):.3f}, engine {med(list(copy)):.3f} / {_p90(copy):.3f}, "
            f"engine -> recorded {med(list(after)):.3f} / {_p90(after):.3f}"
        )
    print(
        "CHECK FAILED:\n  " + "\n  ".join(problems[:20])
        if problems
        else "check: every destination folder count matches"
    )
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)
    return 1 if problems else 0


def _p90(values) -> float:  # noqa: ANN001
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]


if __name__ == "__main__":
    sys.exit(main())
