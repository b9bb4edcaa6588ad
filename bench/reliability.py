"""Reliability run (issue 15, item 7): harm a copy mid-way and count what the mailboxes lost.

    .venv/bin/python -m bench.reliability [--database sqlite|postgres] [--only NAME]

Runs the probes of tests/e2e/probes_reliability.py under pytest (the e2e harness: the test Dovecot on loopback,
the fault proxy, real `manage.py qcluster` subprocesses) and prints a Markdown table, one row per probe:
seconds from the fault until the run left "running", the run's status then, the status of the next run (when
the first did not finish), and messages lost / duplicated / altered (sha256 of BODY[], source vs destination).

--database postgres uses PostgreSQL on 127.0.0.1:5432 (database imapcopier_bench_reliability; pytest-django
creates test_<name>) and Redis on 127.0.0.1:6379 (db 5, a queue name of its own). Each probe has its own
pytest timeout; the whole run stays under about ten minutes on two cores.
Exit status: 0 when every probe ran and every row shows 0 lost / duplicated / altered, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBES = "tests/e2e/probes_reliability.py"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/imapcopier_bench_reliability"


def table(rows: list[dict[str, object]]) -> str:
    """rows (the JSON lines of the probes) as a Markdown table."""
    lines = [
        "| probe | database / broker | s until not running | run status | next run | lost | duplicated | altered |",
        "|---|---|---:|---|---|---:|---:|---:|",
    ]
    for row in rows:
        seconds = "-" if row["left_running_s"] is None else f"{row['left_running_s']:.1f}"
        lines.append(
            f"| {row['probe']} | {row['database']} / {row['broker']} | {seconds} | {row['status']} | "
            f"{row['next_run']} | {row['lost']} | {row['duplicated']} | {row['altered']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the probes; print the table; 0 when all ran clean."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--only", default="", help="run only probes whose function name contains this")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="imapcopier-reliability-") as scratch:
        out = Path(scratch) / "rows.jsonl"
        env = {**os.environ, "RELIABILITY_OUT": str(out)}
        env.pop("DATABASE_URL", None)
        if args.database == "postgres":
            env.update(DATABASE_URL=POSTGRES_URL, RELIABILITY_REDIS="1")
        command = [
            sys.executable,
            "-m",
            "pytest",
            PROBES,
            "-q",
            "-p",
            "no:randomly",
            "-o",
            "python_functions=probe_*",
            "-o",
            "python_files=probes_*.py",
        ]
        if args.only:
            command += ["-k", args.only]
        done = subprocess.run(command, cwd=ROOT, env=env, check=False)
        rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    print()
    print(table(rows))
    clean = all(row["lost"] == row["duplicated"] == row["altered"] == 0 for row in rows)
    return 0 if done.returncode == 0 and rows and clean else 1


if __name__ == "__main__":
    sys.exit(main())
