"""IMAP commands one account copy sends (issue 14): a first copy and a no-op re-run of one small mailbox.

    .venv/bin/python -m bench.commands                  # 5 messages (bench/corpus.py, seed 2026)
    .venv/bin/python -m bench.commands --messages 50 --verbose

Not a test: nothing here asserts a count. A private Dovecot on loopback (tests/support/dovecot.py), the engine
(`copy_account`, JSON state file) copying into a fresh user, every command line counted as imaplib sends it
(literal contents are not commands). Prints, per run, the commands in all and by verb, and the connections.
"""

from __future__ import annotations

import argparse
import collections
import imaplib
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--verbose", action="store_true", help="print every command line (truncated)")
    args = parser.parse_args(argv)

    from bench import corpus
    from runs.engine import copy_account
    from runs.engine.filestate import JsonFileStateStore
    from runs.engine.types import Mailbox
    from tests.support.dovecot import Dovecot

    sent: list[tuple[int, bytes]] = []
    original = imaplib.IMAP4.send

    def send(self: imaplib.IMAP4, data: bytes) -> None:
        first = bytes(data[:120]).split(b"\r\n", 1)[0]
        words = first.split(b" ", 2)
        if len(words) >= 2 and words[0].isalnum() and words[1].isalpha():  # "TAG VERB ...", not a literal
            sent.append((id(self), first))
        return original(self, data)

    imaplib.IMAP4.send = send  # type: ignore[method-assign]
    workdir = Path(tempfile.mkdtemp(prefix="imapcopier-commands-"))
    workdir.chmod(0o755)  # Dovecot's unprivileged processes must reach the directory below
    with Dovecot(workdir=workdir / "dovecot") as server:
        source, destination = server.add_user("src"), server.add_user("dst")
        corpus.load(server, source, corpus.specs(args.messages, args.seed), connections=1)

        def mailbox(user) -> Mailbox:  # noqa: ANN001
            return Mailbox(
                host="127.0.0.1",
                port=server.imap_port,
                username=user.username,
                password=user.password,
                security="plain",
            )

        for label in ("first copy", "no-op re-run"):
            sent.clear()
            result = copy_account(
                mailbox(source), mailbox(destination), state=JsonFileStateStore(workdir / "state.json")
            )
            verbs = collections.Counter()
            for _connection, line in sent:
                words = line.split(b" ")
                verb = words[1].upper().decode("ascii", "replace")
                if verb == "UID" and len(words) > 2:
                    verb += " " + words[2].upper().decode("ascii", "replace")
                verbs[verb] += 1
            print(
                f"{label}: {result.outcome}, {result.copied} copied, {result.skipped} already there; "
                f"{len(sent)} commands on {len({c for c, _ in sent})} connections"
            )
            print("  " + ", ".join(f"{verb} {count}" for verb, count in verbs.most_common()))
            if args.verbose:
                for _connection, line in sent:
                    print("    " + line[:100].decode("ascii", "replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
