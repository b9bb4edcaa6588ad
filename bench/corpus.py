"""A deterministic, realistic mail corpus for the benchmark, and loading it into a test Dovecot.

5,000 messages come to about 400 MB: text messages with a median near 6 KB (plain, or text+HTML,
some 8-bit), a tenth with a 50 KB - 2 MB attachment, one in a thousand of about 10 MB; 14 folders
with nesting, spaces, '&' and non-ASCII names; \\Seen/\\Answered/\\Flagged/\\Draft and keywords;
dates from 2012 to 2026 in several time zones; some messages without a Message-ID, some sharing
another message's Message-ID, a few exact duplicates. The same (messages, seed) gives the same bytes.

    python -m bench.corpus --messages 5000        # prints the corpus statistics, loads nothing
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import math
import random
import statistics
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

# (folder, share of the messages); "Receipts" exists only as the parent of "Receipts/Travel 2018".
FOLDERS: list[tuple[str, float]] = [
    ("INBOX", 0.28),
    ("Sent", 0.12),
    ("Drafts", 0.01),
    ("Trash", 0.03),
    ("Junk", 0.03),
    ("Archive", 0.05),
    ("Archive/2019", 0.09),
    ("Archive/2020", 0.09),
    ("Archive/2021", 0.09),
    ("Projects", 0.02),
    ("Projects/Client A & B", 0.06),
    ("Projects/Ünïcödé Проект", 0.05),
    ("Old Mail", 0.05),
    ("Receipts/Travel 2018", 0.03),
]
OFFSETS = [-8, -5, -3, 0, 0, 0, 1, 1, 2, 3, 5.5, 9]  # hours; UTC and Europe most common
KEYWORDS = [
    "$Label1",
    "$Label2",
    "$Label3",
    "$Forwarded",
    "$MDNSent",
    "Work",
    "Personal",
]
_WORD_TEXT = (
    "the of and to in is for on that by this with from at as your all have new more an was we "
    "will home can us about if page my has search free but our one other do no information time "
    "they site he up may what which their news out use any there see only so his when contact "
    "here business who web also now help get pm view online first am been would how were me "
    "services some these click its like service than find price date back top people had list "
    "name just over state year day into email two health world next used go work last most "
    "products music buy data make them should product system post her city add policy number "
    "meeting invoice quarter budget review project deadline report figures attached regards"
)
WORDS = _WORD_TEXT.split()
_EIGHT_BIT_TEXT = "Grüße Köln Ärger über Straße naïve café señor Привет мир Ελλάδα 日本語"
EIGHT_BIT_WORDS = _EIGHT_BIT_TEXT.split()
NAMES = [
    ("Alice Martin", "alice@example.org"),
    ("Bob Nguyen", "bob@example.net"),
    ("Chloé Dubois", "chloe@example.fr"),
    ("Dmitri Ivanov", "dmitri@example.ru"),
    ("Eve Johnson", "eve@example.com"),
    ("Fatima Zahra", "fatima@example.ma"),
    ("Günter Weiß", "guenter@example.de"),
    ("Hiro Tanaka", "hiro@example.jp"),
]
ATTACHMENT_MIN, ATTACHMENT_MAX = 50_000, 2_000_000  # encoded message size range
HUGE_SIZE = 10_000_000


@dataclass(frozen=True)
class Spec:
    """Everything needed to render one message; cheap to keep 20,000 of them."""

    index: int
    folder: str
    date: dt.datetime  # the Date header; INTERNALDATE is a little later
    internaldate: dt.datetime
    flags: tuple[str, ...]
    message_id: str | None
    body_size: int  # approximate text size in bytes
    attachment_size: int  # raw attachment bytes (0 = none)
    html: bool
    eight_bit: bool
    duplicate_of: int | None = None  # render the exact bytes of that message


def _date_for(rng: random.Random, folder: str) -> dt.datetime:
    if folder.startswith("Archive/"):
        year = int(folder.split("/")[1])
        start, end = dt.datetime(year, 1, 1), dt.datetime(year, 12, 31, 23, 59)
    elif folder == "Receipts/Travel 2018":
        start, end = dt.datetime(2018, 1, 1), dt.datetime(2018, 12, 31)
    elif folder == "Old Mail":
        start, end = dt.datetime(2012, 1, 1), dt.datetime(2016, 12, 31)
    else:
        start, end = dt.datetime(2012, 1, 1), dt.datetime(2026, 10, 31)
    seconds = rng.randrange(int((end - start).total_seconds()))
    offset = dt.timezone(dt.timedelta(hours=rng.choice(OFFSETS)))
    return (start + dt.timedelta(seconds=seconds)).replace(tzinfo=offset)


def _flags_for(rng: random.Random, folder: str) -> tuple[str, ...]:
    flags: set[str] = set()
    if folder == "Drafts":
        flags.add("\\Draft")
    elif rng.random() < (0.3 if folder == "Junk" else 0.85):
        flags.add("\\Seen")
    if folder not in ("Drafts", "Junk", "Sent") and rng.random() < 0.12:
        flags.add("\\Answered")
    if rng.random() < 0.04:
        flags.add("\\Flagged")
    if rng.random() < 0.08:
        flags.add(rng.choice(KEYWORDS))
    if rng.random() < 0.02:
        flags.update(rng.sample(KEYWORDS, 2))
    return tuple(sorted(flags))


def specs(messages: int = 5000, seed: int = 2026, first_index: int = 0) -> list[Spec]:
    """The corpus as a list of Specs (no bytes yet), deterministic for (messages, seed)."""
    rng = random.Random(f"corpus|{seed}|{first_index}")
    names = [name for name, _share in FOLDERS]
    weights = [share for _name, share in FOLDERS]
    huge = set(rng.sample(range(messages), max(1, messages // 1000))) if messages >= 200 else set()
    out: list[Spec] = []
    for offset in range(messages):
        index = first_index + offset
        folder = rng.choices(names, weights)[0]
        date = _date_for(rng, folder)
        internaldate = date + dt.timedelta(seconds=rng.randrange(2, 600))
        roll = rng.random()
        if offset in huge:
            attachment = int(HUGE_SIZE * 0.73)
        elif roll < 0.10:
            encoded = ATTACHMENT_MIN + (ATTACHMENT_MAX - ATTACHMENT_MIN) * rng.random() ** 2.3
            attachment = int(encoded * 0.73)  # base64 with line breaks is about 1.37 x
        else:
            attachment = 0
        body = int(min(200_000, max(300, rng.lognormvariate(math.log(4_800), 0.75))))
        message_id: str | None = (
            f"<{seed}.{index}.{hashlib.sha1(f'{seed}|{index}'.encode()).hexdigest()[:12]}@mail.example.org>"
        )
        duplicate_of = None
        pick = rng.random()
        if pick < 0.02:
            message_id = None  # drafts and old clients: no Message-ID
        elif pick < 0.03 and out:
            message_id = rng.choice(out).message_id  # a different message sharing a Message-ID
        elif pick < 0.035 and out:
            duplicate_of = rng.choice([s for s in out[-50:] if s.folder == folder] or [None])  # type: ignore[list-item]
            duplicate_of = duplicate_of.index if duplicate_of else None
        out.append(
            Spec(
                index=index,
                folder=folder,
                date=date,
                internaldate=internaldate,
                flags=_flags_for(rng, folder),
                message_id=message_id,
                body_size=body,
                attachment_size=attachment,
                html=rng.random() < 0.3,
                eight_bit=rng.random() < 0.06,
                duplicate_of=duplicate_of,
            )
        )
    return out


def _text(rng: random.Random, size: int, eight_bit: bool) -> str:
    lines: list[str] = []
    total = 0
    while total < size:
        words = rng.choices(WORDS, k=rng.randint(6, 14))
        if eight_bit and rng.random() < 0.3:
            words.append(rng.choice(EIGHT_BIT_WORDS))
        line = " ".join(words).capitalize() + "."
        if rng.random() < 0.15:
            line += "\n"
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines) + "\n"


def render(spec: Spec, by_index: dict[int, Spec] | None = None) -> bytes:
    """The message bytes (CRLF line endings) for a Spec."""
    if spec.duplicate_of is not None and by_index is not None and spec.duplicate_of in by_index:
        return render(by_index[spec.duplicate_of])
    rng = random.Random(f"message|{spec.index}")
    sender, recipient = rng.sample(NAMES, 2)
    charset = "utf-8"
    subject_words = rng.choices(WORDS, k=rng.randint(2, 7))
    if spec.eight_bit:
        subject_words.append(rng.choice(EIGHT_BIT_WORDS))
    subject = " ".join(subject_words).capitalize()
    date_text = spec.date.strftime("%a, %d %b %Y %H:%M:%S %z")
    received_at = spec.internaldate.strftime("%a, %d %b %Y %H:%M:%S %z")
    head = [
        f"Return-Path: <{sender[1]}>",
        f"Received: from mail.example.org (mail.example.org [192.0.2.{spec.index % 250 + 1}])\n"
        f"\tby mx.example.net (Postfix) with ESMTPS id {spec.index:08X}\n\tfor <{recipient[1]}>; {received_at}",
        f"Date: {date_text}",
        f"From: {sender[0]} <{sender[1]}>",
        f"To: {recipient[0]} <{recipient[1]}>",
        f"Subject: {subject}",
    ]
    if spec.message_id is not None:
        head.append(f"Message-ID: {spec.message_id}")
    head += ["MIME-Version: 1.0", "X-Mailer: bench-corpus 1.0"]
    cte = "8bit" if spec.eight_bit else "7bit"
    text = _text(rng, spec.body_size if not spec.html else spec.body_size // 2, spec.eight_bit)
    text_part = f"Content-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: {cte}\n\n{text}"
    if spec.html:
        paragraphs = "".join(f"<p>{line}</p>\n" for line in text.splitlines() if line)
        html_part = (
            f"Content-Type: text/html; charset={charset}\nContent-Transfer-Encoding: {cte}\n\n"
            f"<html><body>\n{paragraphs}</body></html>\n"
        )
        alt = f"=_alt_{spec.index}"
        body_part = (
            f'Content-Type: multipart/alternative; boundary="{alt}"\n\n'
            f"--{alt}\n{text_part}\n--{alt}\n{html_part}\n--{alt}--\n"
        )
    else:
        body_part = text_part
    if spec.attachment_size:
        mixed = f"=_mixed_{spec.index}"
        raw = random.Random(f"attachment|{spec.index}").randbytes(spec.attachment_size)
        encoded = base64.b64encode(raw).decode("ascii")
        lines = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
        name = rng.choice(["report.pdf", "photo.jpg", "slides.pptx", "data.xlsx", "scan.tiff"])
        message = (
            "\n".join(head)
            + f'\nContent-Type: multipart/mixed; boundary="{mixed}"\n\n'
            + "This is a multi-part message in MIME format.\n\n"
            + f"--{mixed}\n{body_part}\n--{mixed}\n"
            + f'Content-Type: application/octet-stream; name="{name}"\n'
            + "Content-Transfer-Encoding: base64\n"
            + f'Content-Disposition: attachment; filename="{name}"\n\n'
            + lines
            + f"\n--{mixed}--\n"
        )
    else:
        message = "\n".join(head) + "\n" + body_part
    return message.replace("\n", "\r\n").encode("utf-8")


def messages(items: list[Spec]) -> Iterator[tuple[Spec, bytes]]:
    by_index = {s.index: s for s in items}
    for spec in items:
        yield spec, render(spec, by_index)


def load(server, user, items: list[Spec], *, connections: int = 2) -> dict[str, int]:  # noqa: ANN001
    """APPEND the corpus into `user`'s mailbox on `server` (a tests.support.dovecot.Dovecot), folders in
    parallel over `connections` connections. Returns {folder: message count}."""
    from tests.support.dovecot import fill

    by_index = {s.index: s for s in items}
    by_folder: dict[str, list[Spec]] = {}
    for spec in items:
        by_folder.setdefault(spec.folder, []).append(spec)
    folders = sorted(
        by_folder,
        key=lambda f: -sum(s.attachment_size + s.body_size for s in by_folder[f]),
    )
    queues: list[list[str]] = [[] for _ in range(connections)]
    loads = [0] * connections
    for folder in folders:  # greedy balance by bytes
        slot = loads.index(min(loads))
        queues[slot].append(folder)
        loads[slot] += sum(s.attachment_size + s.body_size for s in by_folder[folder])
    errors: list[BaseException] = []

    def worker(assigned: list[str]) -> None:
        try:
            client = server.connect(user, timeout=300)
            try:
                for folder in assigned:
                    fill(
                        client,
                        folder,
                        ((render(s, by_index), s.flags, s.internaldate) for s in by_folder[folder]),
                    )
            finally:
                client.logout()
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(q,)) for q in queues if q]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return {folder: len(items) for folder, items in by_folder.items()}


def describe(items: list[Spec]) -> str:
    sizes = [len(raw) for _spec, raw in messages(items)]
    per_folder = Counter(s.folder for s in items)
    lines = [
        f"{len(items)} messages, {sum(sizes) / 1e6:.1f} MB, median {statistics.median(sizes) / 1e3:.1f} KB, "
        f"largest {max(sizes) / 1e6:.1f} MB",
        f"with attachment: {sum(1 for s in items if s.attachment_size)}, "
        f"without Message-ID: {sum(1 for s in items if s.message_id is None)}, "
        f"exact duplicates: {sum(1 for s in items if s.duplicate_of is not None)}, "
        f"8-bit: {sum(1 for s in items if s.eight_bit)}",
    ]
    lines += [f"  {count:6d}  {folder}" for folder, count in sorted(per_folder.items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    print(describe(specs(args.messages, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
