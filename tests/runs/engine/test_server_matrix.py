"""The cross-server matrix: every ordered pair among Dovecot 2.3, Cyrus 3.6 and Courier-IMAP 5.0 (issue 10).

One realistic corpus is loaded once per server (module scope): nested and non-ASCII folder names, keywords,
messages without Message-ID, two messages sharing one, a \\Deleted message, INTERNALDATEs with offsets. For each
direction a fresh destination user gets a full copy, compared folder by folder and message by message (sha256 of
BODY[], flags, INTERNALDATE as an instant); an identical re-run copies nothing; N new source messages are exactly
N copied. The connection test passes against each server. (Capability-specific behaviour, names a destination
cannot hold and messages a destination alters: test_server_capabilities.py.)
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import Counter
from dataclasses import dataclass, replace

import pytest

from runs.engine import copy_account, plan_folders, test_connection
from runs.engine.filestate import MemoryStateStore
from runs.engine.types import NotCopied, Outcome
from tests.runs.engine.helpers import CommandRecorder
from tests.support.dovecot import fill, make_message, read

pytestmark = pytest.mark.imap

SERVERS = ("dovecot", "cyrus", "courier")
WHEN = dt.datetime(2021, 11, 5, 8, 15, 0, tzinfo=dt.timezone(dt.timedelta(hours=-4)))
PAIRS = [(source, destination) for source in SERVERS for destination in SERVERS if source != destination]


def _offset(hours: float) -> dt.timezone:
    return dt.timezone(dt.timedelta(hours=hours))


# path with "/" between levels -> messages (raw bytes, flags, INTERNALDATE). Headers stay 7-bit: Cyrus rewrites
# 8-bit header bytes on APPEND (covered on its own); 8-bit bodies are kept by all three.
def corpus() -> dict[str, list[tuple[bytes, tuple[str, ...], dt.datetime]]]:
    shared_id = "<same-id-twice@example.org>"
    return {
        "INBOX": [
            (make_message(subject="plain", seed=1), ("\\Seen",), dt.datetime(2019, 5, 6, 7, 8, 9, tzinfo=_offset(-5))),
            (
                make_message(subject="no message id", message_id=None, seed=2),
                (),
                dt.datetime(2001, 1, 1, tzinfo=_offset(9)),
            ),
            (
                make_message(subject="twin", message_id=shared_id, seed=3),
                ("\\Seen",),
                dt.datetime(2022, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
            ),
            (
                make_message(subject="twin", message_id=shared_id, seed=3),
                (),
                dt.datetime(2022, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
            ),
            (
                make_message(subject="keywords", seed=4),
                ("$Work", "$Label1", "\\Flagged"),
                dt.datetime(2024, 2, 29, 23, 59, 59, tzinfo=dt.UTC),
            ),
            (
                make_message(subject="deleted", seed=5),
                ("\\Deleted", "\\Seen"),
                dt.datetime(2020, 6, 1, tzinfo=_offset(2)),
            ),
            (
                make_message(subject="eight-bit body", eight_bit=True, seed=6),
                ("\\Answered",),
                dt.datetime(2018, 3, 4, tzinfo=_offset(5.5)),
            ),
        ],
        "Projects": [
            (
                make_message(subject="attachment", attachment_size=40_000, seed=7),
                ("\\Seen", "\\Draft"),
                dt.datetime(2023, 7, 8, tzinfo=dt.UTC),
            ),
        ],
        "Projects/2026/Grüße": [
            (make_message(subject="nested", seed=8), (), dt.datetime(2026, 1, 1, 12, tzinfo=_offset(1))),
            (make_message(subject="nested two", seed=9), ("$Todo",), dt.datetime(2026, 1, 2, 12, tzinfo=_offset(1))),
        ],
        "Archiv Ärger": [
            (
                make_message(subject="archived", message_id=None, seed=10),
                ("\\Seen",),
                dt.datetime(2015, 10, 21, tzinfo=_offset(-7)),
            ),
        ],
    }


def folder_name(server, path: str) -> str:
    """The server's name for `path` ("/" between levels): its personal prefix and delimiter."""
    if path == "INBOX":
        return "INBOX"
    return server.prefix + path.replace("/", server.delimiter)


@dataclass
class Loaded:
    server: object
    user: object


@pytest.fixture(scope="module")
def loaded(request) -> dict[str, Loaded]:
    """Each server with one user holding the corpus, loaded once for the module."""
    result = {}
    for name in SERVERS:
        server = request.getfixturevalue("imap_server" if name == "dovecot" else f"{name}_server")
        user = server.add_user()
        with server.connect(user) as client:
            for path, messages in corpus().items():
                fill(client, folder_name(server, path), messages)
        result[name] = Loaded(server, user)
    return result


def _key(message) -> tuple:
    return (message.sha256, message.flags, message.internaldate)


def compare(source: Loaded, destination: Loaded, dest_user) -> tuple[int, int, int, int, list[str]]:
    """(messages right, messages total, folders right, folders total, differences) for every selectable
    source folder against the destination folder the plan maps it to."""
    plans = plan_folders(source.server.mailbox(source.user), destination.server.mailbox(dest_user), None)
    right = total = folders_right = folders_total = 0
    differences: list[str] = []
    with source.server.connect(source.user) as src, destination.server.connect(dest_user) as dst:
        existing = {name for _f, _d, name in dst.list_folders()}
        for plan in plans:
            if not plan.selectable:
                continue
            folders_total += 1
            theirs = read(src, plan.source)
            total += len(theirs)
            if plan.destination not in existing:
                differences.append(f"{plan.source!r} -> {plan.destination!r}: missing at the destination")
                continue
            ours = Counter(_key(m) for m in read(dst, plan.destination))
            wanted = Counter(_key(m) for m in theirs)
            right += sum((wanted & ours).values())
            if wanted == ours:
                folders_right += 1
            else:
                missing = wanted - ours
                extra = ours - wanted
                differences.append(
                    f"{plan.source!r} -> {plan.destination!r}: missing {dict(missing)}, extra {dict(extra)}"
                )
    return right, total, folders_right, folders_total, differences


@pytest.mark.parametrize(
    ("source_name", "destination_name"),
    [pytest.param(s, d, id=f"{s}-to-{d}") for s, d in PAIRS],
)
def test_full_copy_rerun_and_new_messages(loaded, source_name, destination_name):
    source, destination = loaded[source_name], loaded[destination_name]
    dest_user = destination.server.add_user()
    store = MemoryStateStore()
    src_mailbox, dst_mailbox = source.server.mailbox(source.user), destination.server.mailbox(dest_user)

    first = copy_account(src_mailbox, dst_mailbox, state=store)
    assert first.outcome == Outcome.DONE, first.reason
    assert first.errors == 0, first.message_errors
    right, total, folders_right, folders_total, differences = compare(source, destination, dest_user)
    print(
        f"\nmatrix {source_name} -> {destination_name}: messages {right}/{total}, folders {folders_right}/{folders_total}"
    )
    assert differences == []
    assert first.copied == total

    again = copy_account(src_mailbox, dst_mailbox, state=store)
    assert again.outcome == Outcome.DONE, again.reason
    assert (again.copied, again.errors) == (0, 0)

    # N new messages in a folder of its own (the corpus stays as other directions expect it).
    new = [
        (
            make_message(subject=f"new {i}", seed=f"{source_name}-{destination_name}-{i}"),
            ("\\Seen",) if i % 2 else (),
            None,
        )
        for i in range(3)
    ]
    with source.server.connect(source.user) as client:
        fill(client, folder_name(source.server, f"New for {destination_name}"), new)
        fill(client, "INBOX", new[:1])
    third = copy_account(src_mailbox, dst_mailbox, state=store)
    assert third.outcome == Outcome.DONE, third.reason
    assert (third.copied, third.errors) == (len(new) + 1, 0)
    right, total, folders_right, folders_total, differences = compare(source, destination, dest_user)
    assert differences == []


@pytest.mark.parametrize("name", SERVERS)
def test_connection_test_passes(loaded, name):
    server = loaded[name]
    result = test_connection(server.server.mailbox(server.user))
    assert result.ok, result.message
    assert result.folder_count >= len(corpus())


@pytest.mark.parametrize(
    ("source_name", "destination_name"),
    [pytest.param(s, d, id=f"{s}-to-{d}") for s, d in PAIRS],
)
def test_flag_changes_land_on_the_right_copy_cheaply(loaded, source_name, destination_name):
    source, destination = loaded[source_name], loaded[destination_name]
    source_user, dest_user = source.server.add_user(), destination.server.add_user()
    twin = make_message(subject="twin", message_id="<twins@example.org>", seed=60)
    other = make_message(subject="other", seed=61)
    with source.server.connect(source_user) as client:
        uids = fill(client, "INBOX", [(twin, ("\\Seen",), WHEN), (twin, (), WHEN), (other, ("$Work",), WHEN)])
    store = MemoryStateStore()
    src_mailbox, dst_mailbox = source.server.mailbox(source_user), destination.server.mailbox(dest_user)
    assert copy_account(src_mailbox, dst_mailbox, state=store).copied == 3

    with source.server.connect(source_user) as client:
        client.select_folder("INBOX")
        client.add_flags([uids[1]], ["\\Flagged"])  # the second twin only
        client.remove_flags([uids[2]], ["$Work"])
        client.add_flags([uids[2]], ["\\Answered"])
    recorded = store.load()["INBOX"]  # what the first run left on record (shown if the check below fails)
    with CommandRecorder(source.server.imap_port) as recorder:
        again = copy_account(replace(src_mailbox, port=recorder.port), dst_mailbox, state=store)
    assert (again.copied, again.errors) == (0, 0)
    with source.server.connect(source_user) as src, destination.server.connect(dest_user) as dst:
        assert Counter(_key(m) for m in read(dst, "INBOX")) == Counter(_key(m) for m in read(src, "INBOX"))
    # Cheaply: the re-run reads flags from the source, never headers or bodies again.
    fetches = [line.upper() for line in recorder.commands if b" FETCH " in line.upper()]
    assert fetches and not [line for line in fetches if b"BODY" in line or b"RFC822" in line], recorded


@pytest.mark.parametrize("destination_name", SERVERS)
def test_a_rerun_finds_the_record_of_a_new_destination_folder_valid(loaded, destination_name):
    """Courier answers STATUS on a folder it has no UIDs stored for with a UIDVALIDITY it does not keep (the time
    of asking, in seconds, until the folder is first written): a record bound to that value looked re-created on
    the next run, was voided with a warning saying so, and every message was matched again. Here a second
    passes between planning's STATUS of the new folder and its first write (the worker's SELECT)."""
    source = loaded["dovecot" if destination_name == "cyrus" else "cyrus"]
    destination = loaded[destination_name]
    source_user, dest_user = source.server.add_user(), destination.server.add_user()
    with source.server.connect(source_user) as client:
        fill(client, "INBOX", [(make_message(subject=f"m{i}", seed=70 + i), (), WHEN) for i in range(3)])
    waited = []

    def slow_first_select(line: bytes) -> bool:
        if b' SELECT "INBOX"' in line and not waited:
            waited.append(line)
            time.sleep(1.1)
        return False

    store = MemoryStateStore()
    src_mailbox = source.server.mailbox(source_user)
    with CommandRecorder(destination.server.imap_port, client_cut=slow_first_select) as slow:
        dst_mailbox = replace(destination.server.mailbox(dest_user), port=slow.port)
        first = copy_account(src_mailbox, dst_mailbox, state=store)
        assert (first.outcome, first.copied, first.warnings) == (Outcome.DONE, 3, [])
        assert waited, "the copy never selected the destination INBOX"

        with destination.server.connect(dest_user) as client:
            kept = client.folder_status("INBOX", ["UIDVALIDITY"])[b"UIDVALIDITY"]
        assert store.load()["INBOX"].destination_uidvalidity == kept
        with CommandRecorder(source.server.imap_port) as recorder:
            again = copy_account(replace(src_mailbox, port=recorder.port), dst_mailbox, state=store)
    assert (again.outcome, again.copied, again.skipped, again.warnings) == (Outcome.DONE, 0, 3, [])
    assert not [line for line in recorder.commands if b" FETCH " in line.upper()]


def _deliver(server, user, messages: list[bytes]) -> None:
    """Put messages straight into a Courier user's Maildir, as a mail delivery agent does: no IMAP session has
    opened the folder, so Courier has stored no UIDs for it."""
    cur = server.workdir / "home" / user.username / "Maildir" / "cur"
    for raw in messages:
        path = cur / f"{time.time_ns()}.M{len(list(cur.iterdir()))}P1.mail.example.org:2,"
        path.write_bytes(raw.replace(b"\r\n", b"\n"))  # a Maildir file has LF line ends
        os.chown(path, server.uid, server.gid)


def _slow_nth_examine(nth: int):
    """A client_cut for CommandRecorder: the nth EXAMINE of INBOX reaches the server a second late."""
    seen = []

    def hook(line: bytes) -> bool:
        if b' EXAMINE "INBOX"' in line:
            seen.append(line)
            if len(seen) == nth:
                time.sleep(1.1)
        return False

    return hook


def _copy_from_courier(courier, user, destination, dest_user, hook, **kwargs) -> tuple[object, CommandRecorder]:
    """copy_account from a Courier user (through a relay whose client_cut is `hook`) to `dest_user`; `kwargs` for
    copy_account (a fresh MemoryStateStore unless `state` is given). Returns the result and the relay."""
    kwargs.setdefault("state", MemoryStateStore())
    with CommandRecorder(courier.imap_port, client_cut=hook) as relay:
        result = copy_account(replace(courier.mailbox(user), port=relay.port), destination.mailbox(dest_user), **kwargs)
    return result, relay


def _inbox(server, user) -> Counter:
    """The INBOX of `user` as a multiset of message digests."""
    with server.connect(user) as client:
        return Counter(m.sha256 for m in read(client, "INBOX"))


def test_a_source_folder_with_a_new_uidvalidity_each_session_is_copied_whole_and_once(loaded):
    """Courier keeps no UIDs for a folder nobody has opened read-write (mail delivered straight into the Maildir):
    each session gets another UIDVALIDITY, the time in seconds (RFC 9051 §2.3.1.1 allows it). A worker opening the
    folder a second after planning read its STATUS found "another UIDVALIDITY" and left it for the next run, where
    the same happened: nothing was ever copied, in runs reported done."""
    courier, destination = loaded["courier"].server, loaded["dovecot"].server
    user, dest_user = courier.add_user(), destination.add_user()
    twin = "<twin@example.org>"
    _deliver(
        courier,
        user,
        [
            make_message(subject="one", seed=80),
            make_message(subject="no id", message_id=None, seed=81),
            make_message(subject="twin", message_id=twin, body="first of two", seed=82),
            make_message(subject="twin", message_id=twin, body="second of two", seed=83),
        ],
    )
    store = MemoryStateStore()
    first, _ = _copy_from_courier(courier, user, destination, dest_user, _slow_nth_examine(1), state=store)
    assert (first.outcome, first.copied, first.errors, first.source_messages) == (Outcome.DONE, 4, 0, 4)
    assert [w for w in first.warnings if "another UIDVALIDITY" in w], first.warnings
    assert _inbox(destination, dest_user) == _inbox(courier, user)

    # New mail; the next run (its worker again a second late) copies it alone: nothing twice.
    _deliver(courier, user, [make_message(subject="later", seed=84)])
    again, _ = _copy_from_courier(courier, user, destination, dest_user, _slow_nth_examine(2), state=store)
    assert (again.outcome, again.copied, again.skipped, again.errors) == (Outcome.DONE, 1, 4, 0), again.warnings
    assert _inbox(destination, dest_user) == _inbox(courier, user)


def test_a_source_folder_that_never_keeps_its_uidvalidity_long_enough_is_left_for_the_next_run_and_says_so(loaded):
    """Each session the folder is read again in breaks before its copy is done (a connection cut on every body
    FETCH), so each reconnect sees another UIDVALIDITY: after five readings the folder is left for the next run."""
    courier, destination = loaded["courier"].server, loaded["dovecot"].server
    user, dest_user = courier.add_user(), destination.add_user()
    _deliver(courier, user, [make_message(subject=f"m{i}", seed=90 + i) for i in range(2)])

    def every_examine_late_and_every_body_fetch_cut(line: bytes) -> bool:
        if b' EXAMINE "INBOX"' in line:
            time.sleep(1.1)
        return b"FETCH" in line.upper() and b"BODY" in line.upper()

    result, _ = _copy_from_courier(courier, user, destination, dest_user, every_examine_late_and_every_body_fetch_cut)
    # Read again in a new session five times, then given up on for this run: counted, and said once each.
    assert (result.outcome, result.copied, result.not_copied) == (Outcome.DONE, 0, {NotCopied.NOT_ATTEMPTED: 2})
    assert [w.split(" (")[0] for w in result.warnings] == [
        "'INBOX' had another UIDVALIDITY in another session",
        "'INBOX' had another UIDVALIDITY",
    ], result.warnings
    assert result.warnings[-1].endswith("each time it was opened; what is left of it is copied next run")


def test_over_a_slow_link_a_source_folder_without_kept_uids_is_planned_in_the_session_that_reads_it(loaded):
    """Planning compares the UIDVALIDITY of STATUS with the one its EXAMINE gets. Over a slow link (every EXAMINE a
    second late here) a folder without kept UIDs (Courier) never agreed: each try reconnected, and after five the
    account failed ("gave up after 5 reconnects while reading 'INBOX'"). With no record to keep, the session that
    reads the folder is the one its UIDs are planned in."""
    courier, destination = loaded["courier"].server, loaded["dovecot"].server
    user, dest_user = courier.add_user(), destination.add_user(max_message_bytes=20_000)
    messages = [make_message(subject=f"m{i}", seed=100 + i) for i in range(3)]
    _deliver(courier, user, messages[:2])
    with destination.connect(dest_user) as client:  # the destination already holds one: planning must look
        fill(client, "INBOX", [(messages[0], (), WHEN)])

    def every_examine_late(line: bytes) -> bool:
        if b' EXAMINE "INBOX"' in line:
            time.sleep(1.1)
        return False

    _deliver(courier, user, messages[2:])
    result, _ = _copy_from_courier(courier, user, destination, dest_user, every_examine_late)
    assert (result.outcome, result.copied, result.skipped, result.errors) == (Outcome.DONE, 2, 1, 0), result.reason
    assert _inbox(destination, dest_user) == _inbox(courier, user)


def test_a_folder_read_again_in_one_session_counts_what_this_run_already_copied_once(loaded):
    """A folder big enough for two units on two connections: one worker opens it in planning's second and copies
    its half, the other a second later, under another UIDVALIDITY. The folder is then read again: the first half is
    found at the destination (copied by this run, counted once, as copied), the second half copied. A message the
    destination refuses (too big) is refused in both sessions and counted once."""
    courier, destination = loaded["courier"].server, loaded["dovecot"].server
    user, dest_user = courier.add_user(), destination.add_user(max_message_bytes=20_000)
    messages = [make_message(subject=f"m{i}", seed=200 + i) for i in range(450)]
    messages[10] = make_message(subject="too big", attachment_size=30_000, seed=199)  # refused: one error
    _deliver(courier, user, messages)
    result, _ = _copy_from_courier(courier, user, destination, dest_user, _slow_nth_examine(2), connections=2)
    assert [w for w in result.warnings if "another UIDVALIDITY" in w], result.warnings
    assert (result.outcome, result.copied, result.skipped, result.errors, result.source_messages) == (
        Outcome.DONE,
        449,
        0,
        1,
        450,
    )
    # The refused message was tried in both sessions, and counts once.
    assert result.not_copied == {NotCopied.REFUSED: 1}
    assert [(e.subject, e.kind) for e in result.message_errors] == [("too big", NotCopied.REFUSED)]
    with courier.connect(user) as src:
        copied = Counter(m.sha256 for m in read(src, "INBOX") if m.size <= 20_000)  # all but the one too big
    assert _inbox(destination, dest_user) == copied  # each once


def test_a_connection_dropped_while_a_folder_is_read_again_is_taken_up_on_a_new_one(loaded):
    """The re-read of a folder (matching its messages against the destination by identity) loses its source
    connection: it reconnects, reads the folder again in the new session, and every message lands once."""
    courier, destination = loaded["courier"].server, loaded["dovecot"].server
    user, dest_user = courier.add_user(), destination.add_user()
    _deliver(courier, user, [make_message(subject=f"m{i}", seed=700 + i) for i in range(450)])
    slow_second_examine = _slow_nth_examine(2)
    cut = []

    def slow_then_cut_the_first_identity_fetch(line: bytes) -> bool:
        slow_second_examine(line)
        if b"HEADER.FIELDS" in line.upper() and not cut:
            cut.append(line)
            return True
        return False

    result, cutting = _copy_from_courier(
        courier, user, destination, dest_user, slow_then_cut_the_first_identity_fetch, connections=2
    )
    assert cut and cutting.cuts == 1
    assert [w for w in result.warnings if "another UIDVALIDITY" in w], result.warnings
    assert (result.outcome, result.copied, result.skipped, result.errors, result.source_messages) == (
        Outcome.DONE,
        450,
        0,
        0,
        450,
    ), result.warnings
    assert _inbox(destination, dest_user) == _inbox(courier, user)
