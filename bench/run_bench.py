"""Benchmark the copy engine against a minimal raw-IMAP baseline on a private Dovecot (loopback, plain).

    .venv/bin/python -m bench.run_bench                      # 5,000 messages, about 400 MB
    .venv/bin/python -m bench.run_bench --messages 20000     # how cost grows

One run: start Dovecot (tests/support/dovecot.py), load the corpus (bench/corpus.py) into a source user, then
time (a) the engine's full copy into a fresh user, (b) the baseline (bench/baseline.py) into another,
(c) the engine's no-op re-run, (d) the engine after 50 new messages; then `manage.py copymailbox` on the
same state (nothing new) as a whole process. Each copy runs in its own
process, so its peak RSS (VmHWM) is its own; "engine s" is the time spent inside copy_account(),
"process s" adds interpreter start-up and imports. Afterwards the per-folder message counts of both
destinations are checked against the source (--verify also compares sha256 of every message).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
INCREMENT = 50


@dataclass
class Phase:
    name: str
    messages: int
    bytes: int
    engine_seconds: float  # inside the copy function
    process_seconds: float  # whole child process
    cpu_seconds: float  # user + system of the child
    cpu_user_seconds: float  # user alone (the rest is the kernel's: socket copies, reads, writes)
    peak_rss_mb: float
    outcome: str = ""
    errors: int = 0
    skipped: int = 0
    server_cpu_seconds: float = 0.0  # Dovecot's processes during the phase
    machine_busy: float = 0.0  # share of both cores busy during the phase (anyone's work)

    @property
    def rate(self) -> float:
        return self.messages / self.engine_seconds if self.engine_seconds else 0.0

    @property
    def mb_rate(self) -> float:
        return self.bytes / 1e6 / self.engine_seconds if self.engine_seconds else 0.0


# ------------------------------------------------------------------ child processes


PY_SPY: Path | None = None  # --py-spy


def _child(kind: str) -> int:
    """Run one copy in this process; configuration (with passwords) comes on stdin as JSON."""
    config = json.load(sys.stdin)
    before = resource.getrusage(resource.RUSAGE_SELF)
    if kind == "engine":
        from runs.engine import copy_account
        from runs.engine.filestate import JsonFileStateStore
        from runs.engine.types import Mailbox

        source = Mailbox(**config["source"])
        destination = Mailbox(**config["destination"])
        store = JsonFileStateStore(config["state"])
        started = time.perf_counter()
        result = copy_account(source, destination, state=store, connections=config["connections"])
        seconds = time.perf_counter() - started
        report = {
            "messages": result.copied,
            "bytes": result.bytes,
            "outcome": str(result.outcome),
            "errors": result.errors,
            "skipped": result.skipped,
            "reason": result.reason,
            "message_errors": [f"{e.folder} {e.uid}: {e.reason}" for e in result.message_errors[:5]],
        }
    else:
        from bench.baseline import copy_account as baseline_copy

        s, d = config["source"], config["destination"]
        started = time.perf_counter()
        outcome = baseline_copy(
            s["host"],
            s["port"],
            s["username"],
            s["password"],
            d["port"],
            d["username"],
            d["password"],
        )
        seconds = time.perf_counter() - started
        report = {
            "messages": outcome.messages,
            "bytes": outcome.bytes,
            "outcome": "done",
            "errors": 0,
            "skipped": 0,
        }
    after = resource.getrusage(resource.RUSAGE_SELF)
    report["seconds"] = seconds
    report["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    report["cpu_user"] = after.ru_utime - before.ru_utime
    # ru_maxrss survives fork and exec (it would report the parent's peak); VmHWM is this process's.
    report["maxrss_kb"] = _peak_rss_kb()
    print(json.dumps(report))
    return 0


def _peak_rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _run_child(kind: str, config: dict[str, object], name: str, server_pid: int = 0) -> Phase:
    server_before = dovecot_cpu(server_pid) if server_pid else 0.0
    busy_before, total_before = machine_ticks()
    started = time.perf_counter()
    command = [sys.executable, "-m", "bench.run_bench", "--child", kind]
    if kind == "engine" and PY_SPY is not None:  # profile the engine's copies (collapsed stacks, appended)
        out = PY_SPY.with_name(f"{PY_SPY.name}.{name[:3].strip('() ')}.{time.monotonic_ns()}")
        command = ["py-spy", "record", "--threads", "--format", "raw", "--rate", "250", "-o", str(out), "--"] + command
    completed = subprocess.run(
        command,
        input=json.dumps(config),
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    process_seconds = time.perf_counter() - started
    time.sleep(0.3)  # let Dovecot reap the imap processes that just logged out
    server_cpu = dovecot_cpu(server_pid) - server_before if server_pid else 0.0
    busy_after, total_after = machine_ticks()
    machine_busy = (busy_after - busy_before) / max(1, total_after - total_before)
    if completed.returncode != 0:
        raise SystemExit(f"{name} failed:\n{completed.stderr[-3000:]}")
    report = json.loads(
        [line for line in completed.stdout.splitlines() if line.startswith("{")][-1]
    )  # py-spy talks too
    if report.get("reason") or report.get("message_errors"):
        print(
            f"  {name}: {report.get('reason', '')} {report.get('message_errors', '')}",
            file=sys.stderr,
        )
    return Phase(
        name=name,
        messages=report["messages"],
        bytes=report["bytes"],
        engine_seconds=report["seconds"],
        process_seconds=process_seconds,
        cpu_seconds=report["cpu"],
        cpu_user_seconds=report["cpu_user"],
        peak_rss_mb=report["maxrss_kb"] / 1024,
        outcome=report["outcome"],
        errors=report["errors"],
        skipped=report["skipped"],
        server_cpu_seconds=server_cpu,
        machine_busy=machine_busy,
    )


# ------------------------------------------------------------------ CPU accounting

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on


def dovecot_cpu(master_pid: int) -> float:
    """CPU seconds used by Dovecot so far: the master, its reaped children, its live descendants."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(entry)
        if fields is None:
            continue
        pid = int(entry)
        parents[pid] = int(fields[1])
        times[pid] = (int(fields[11]) + int(fields[12])) / _TICK
    master = _stat_fields(master_pid)
    if master is None:
        return 0.0
    total = sum(int(v) for v in master[11:15]) / _TICK  # utime stime cutime cstime
    for pid, parent in parents.items():
        seen = 0
        while parent not in (0, 1, master_pid) and seen < 10:
            parent, seen = parents.get(parent, 0), seen + 1
        if parent == master_pid and pid != master_pid:
            total += times[pid]
    return total


def machine_ticks() -> tuple[int, int]:
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# ------------------------------------------------------------------ checks


def _counts(server, user) -> dict[str, int]:  # noqa: ANN001
    client = server.connect(user, timeout=300)
    try:
        counts = {}
        for flags, _delim, name in client.list_folders():
            if b"\\Noselect" in flags or b"\\NonExistent" in flags:
                continue
            counts[name] = client.folder_status(name, [b"MESSAGES"])[b"MESSAGES"]
        return counts
    finally:
        client.logout()


def _digests(server, user) -> dict[str, list[str]]:  # noqa: ANN001
    from tests.support.dovecot import read

    client = server.connect(user, timeout=300)
    try:
        return {name: sorted(m.sha256 for m in read(client, name, batch=20)) for name in _counts(server, user)}
    finally:
        client.logout()


def _check(server, source, destination, label: str, deep: bool) -> list[str]:  # noqa: ANN001
    problems = []
    want, got = _counts(server, source), _counts(server, destination)
    for folder, count in sorted(want.items()):
        if got.get(folder) != count:
            problems.append(f"{label}: {folder}: source {count}, destination {got.get(folder)}")
    if deep and not problems:
        want_d, got_d = _digests(server, source), _digests(server, destination)
        for folder, digests in want_d.items():
            if got_d.get(folder) != digests:
                problems.append(f"{label}: {folder}: message bytes differ")
    return problems


# ------------------------------------------------------------------ main


def _table(phases: list[Phase], baseline: Phase | None) -> str:
    rows = [
        f"{'phase':<22}{'messages':>9}{'MB':>9}{'engine s':>10}{'process s':>10}{'CPU s':>8}{'user s':>8}"
        f"{'msg/s':>9}{'MB/s':>8}{'peak RSS MB':>12}{'time/baseline':>15}{'Dovecot CPU s':>15}{'machine busy':>14}"
    ]
    for p in phases:
        ratio = (
            f"{p.engine_seconds / baseline.engine_seconds:.2f}"
            if baseline and p.name.startswith(("(a)", "(b)"))
            else ""
        )
        rows.append(
            f"{p.name:<22}{p.messages:>9}{p.bytes / 1e6:>9.1f}{p.engine_seconds:>10.3f}{p.process_seconds:>10.2f}"
            f"{p.cpu_seconds:>8.2f}{p.cpu_user_seconds:>8.2f}{p.rate:>9.0f}{p.mb_rate:>8.1f}{p.peak_rss_mb:>12.1f}{ratio:>15}"
            f"{p.server_cpu_seconds:>15.2f}{p.machine_busy:>13.0%}"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--connections", type=int, default=2, help="engine connections per side")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="full copies of each kind (median is shown)")
    parser.add_argument("--verify", action="store_true", help="also compare sha256 of every message")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--child", choices=["engine", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument(
        "--py-spy",
        type=Path,
        help="record each engine copy with py-spy (installed apart) into files named after this path (collapsed stacks)",
    )
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child)
    global PY_SPY
    PY_SPY = args.py_spy

    sys.path.insert(0, str(REPO))
    from bench import corpus
    from tests.support.dovecot import Dovecot

    workdir = Path(tempfile.mkdtemp(prefix="imapcopier-bench-"))
    workdir.chmod(0o755)  # Dovecot's unprivileged processes must reach the directory below
    print(f"Dovecot and state under {workdir}", flush=True)
    revision = _revision()
    print(f"engine code: {revision}", flush=True)
    with Dovecot(workdir=workdir / "dovecot") as server:
        source = server.add_user("bench-source")

        items = corpus.specs(args.messages, args.seed)
        started = time.perf_counter()
        corpus.load(server, source, items)
        load_seconds = time.perf_counter() - started
        total_bytes = sum(len(raw) for _spec, raw in corpus.messages(items))
        print(
            f"corpus: {len(items)} messages, {total_bytes / 1e6:.1f} MB in "
            f"{len({s.folder for s in items})} folders, loaded in {load_seconds:.1f} s",
            flush=True,
        )

        def config(destination, state: str) -> dict[str, object]:  # noqa: ANN001
            return {
                "source": asdict_mailbox(server.mailbox(source, timeout=300)),
                "destination": asdict_mailbox(server.mailbox(destination, timeout=300)),
                "state": str(workdir / state),
                "connections": args.connections,
            }

        pid = server.pid
        engine_runs: list[Phase] = []
        baseline_runs: list[Phase] = []
        for repeat in range(args.repeat):
            # Fresh destinations each time; alternate who goes first so neither always gets a warm cache.
            dest_engine = server.add_user(f"bench-engine-{repeat}")
            dest_baseline = server.add_user(f"bench-baseline-{repeat}")
            order = ["engine", "baseline"] if repeat % 2 == 0 else ["baseline", "engine"]
            for kind in order:
                if kind == "engine":
                    run = _run_child("engine", config(dest_engine, f"state-{repeat}.json"), "(a) engine full copy", pid)
                    engine_runs.append(run)
                elif not args.skip_baseline:
                    run = _run_child("baseline", config(dest_baseline, "unused"), "(b) baseline", pid)
                    baseline_runs.append(run)
                else:
                    continue
                print(f"run {repeat + 1}: " + _table([run], None).splitlines()[1], flush=True)
        full = _median(engine_runs)
        baseline = _median(baseline_runs) if baseline_runs else None
        last = args.repeat - 1
        phases: list[Phase] = [full] + ([baseline] if baseline else [])
        phases.append(_run_child("engine", config(dest_engine, f"state-{last}.json"), "(c) engine no-op rerun", pid))
        noop = _copymailbox_noop(config(dest_engine, f"state-{last}.json"), workdir)
        extra = corpus.specs(INCREMENT, args.seed, first_index=args.messages)
        corpus.load(server, source, extra, connections=1)
        phases.append(
            _run_child("engine", config(dest_engine, f"state-{last}.json"), f"(d) engine +{INCREMENT} new", pid)
        )
        pair_ratios = [e.engine_seconds / b.engine_seconds for e, b in zip(engine_runs, baseline_runs, strict=False)]
        if args.repeat > 1:
            print()
            print(
                "full copy, every run (engine s / baseline s): "
                + ", ".join(
                    f"{e.engine_seconds:.2f}/{b.engine_seconds:.2f}"
                    for e, b in zip(engine_runs, baseline_runs or engine_runs, strict=False)
                )
                + f"; the table shows the medians of {args.repeat} runs"
            )
            if pair_ratios:
                # Runs side by side share the machine's load: their ratio is steadier than either time.
                print(
                    "time/baseline per run: "
                    + ", ".join(f"{r:.2f}" for r in pair_ratios)
                    + f"; median {sorted(pair_ratios)[(len(pair_ratios) - 1) // 2]:.2f}"
                )

        print()
        print(_table(phases, baseline))
        problems = _check(server, source, dest_engine, "engine", args.verify)
        if baseline is not None:
            # The baseline ran before the 50 new messages: compare it without them.
            baseline_problems = [
                p
                for p in _check(server, source, dest_baseline, "baseline", False)
                if not _explained_by_increment(p, extra)
            ]
            problems += baseline_problems
        print()
        if problems:
            print("CHECK FAILED:\n  " + "\n  ".join(problems))
        else:
            print(
                "check: every source folder has the same message count on the engine's destination"
                + (" and the same bytes (sha256)" if args.verify else "")
            )
        if baseline is not None:
            print(f"full copy time / baseline time: {full.engine_seconds / baseline.engine_seconds:.2f}")
        print(
            f"manage.py copymailbox no-op re-run, whole process: {noop['seconds']:.2f} s wall, {noop['cpu']:.2f} s CPU; "
            f"its summary: {noop['summary']}"
        )
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "engine_code": revision,
                        "messages": len(items),
                        "megabytes": total_bytes / 1e6,
                        "load_seconds": load_seconds,
                        "connections": args.connections,
                        "phases": [asdict(p) for p in phases],
                        "engine_runs": [asdict(p) for p in engine_runs],
                        "baseline_runs": [asdict(p) for p in baseline_runs],
                        "pair_ratios": pair_ratios,
                        "problems": problems,
                    },
                    indent=2,
                )
            )
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)
    return 1 if problems else 0


def _copymailbox_noop(config: dict, workdir: Path) -> dict[str, object]:
    """`manage.py copymailbox` on the state the engine's full copy left (nothing new): the whole process,
    start-up included, as an operator's cron job would run it. A private data directory and keys."""
    from cryptography.fernet import Fernet

    s, d = config["source"], config["destination"]
    env = {
        **os.environ,
        "IMAPCOPIER_DATA_DIR": str(workdir / "copymailbox-data"),
        "DEBUG": "0",
        "SECRET_KEY": "bench-" + Fernet.generate_key().decode(),
        "IMAPCOPIER_FERNET_KEYS": Fernet.generate_key().decode(),
        "IMAPCOPIER_SOURCE_PASSWORD": s["password"],
        "IMAPCOPIER_DESTINATION_PASSWORD": d["password"],
    }
    env.pop("DATABASE_URL", None)
    command = [
        sys.executable, "manage.py", "copymailbox", "--no-progress", "--state", config["state"],
        "--source", f"imap://{s['username']}@{s['host']}:{s['port']}",
        "--destination", f"imap://{d['username']}@{d['host']}:{d['port']}",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"copymailbox failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": seconds, "cpu": cpu, "summary": done.stdout.splitlines()[0]}


def _revision() -> str:
    """The commit the engine comes from, and whether runs/engine has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "runs/engine"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes in runs/engine" if dirty else "")


def _median(runs: list[Phase]) -> Phase:
    return sorted(runs, key=lambda p: p.engine_seconds)[(len(runs) - 1) // 2]  # lower median


def _explained_by_increment(problem: str, extra: list) -> bool:  # noqa: ANN001
    from collections import Counter

    added = Counter(s.folder for s in extra)
    try:
        label, folder, rest = problem.split(": ", 2)
        want = int(rest.split("source ")[1].split(",")[0])
        got = int(rest.split("destination ")[1])
    except (ValueError, IndexError):
        return False
    return want - got == added.get(folder, 0)


def asdict_mailbox(mailbox) -> dict[str, object]:  # noqa: ANN001
    return {
        "host": mailbox.host,
        "port": mailbox.port,
        "security": str(mailbox.security),
        "username": mailbox.username,
        "password": mailbox.password,
        "verify_tls": mailbox.verify_tls,
        "ca_certificate": mailbox.ca_certificate,
        "timeout": mailbox.timeout,
    }


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
