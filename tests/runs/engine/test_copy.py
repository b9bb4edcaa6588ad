"""copy_account() against the real test Dovecot: fidelity, incrementality, folders."""

from __future__ import annotations

import datetime as dt

import pytest

from runs.engine import Outcome, copy_account
from runs.engine.filestate import MemoryStateStore
from tests.runs.engine.helpers import CommandRecorder, assert_same_folder, hiding_capabilities
from tests.support.dovecot import fill, folder_names, make_message, read

pytestmark = pytest.mark.imap

WHEN = dt.datetime(2019, 10, 27, 1, 30, 5, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=45)))


def copy(server_a, user_a, server_b, user_b, store=None, **kwargs):
    store = store if store is not None else MemoryStateStore()
    result = copy_account(server_a.mailbox(user_a), server_b.mailbox(user_b), state=store, **kwargs)
    return result, store


def test_awkward_messages_arrive_byte_for_byte(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    awkward = [
        make_message(seed=1, eight_bit=True, subject="Grüße — 8-bit header"),
        make_message(seed=2, long_line=12_000),
        make_message(seed=3, bare_lf=True),
        make_message(seed=4, body=b""),
        make_message(seed=5, attachment_size=15 * 1024 * 1024),  # about 20 MB once base64-encoded
        make_message(
            seed=6,
            eight_bit=True,
            charset="iso-8859-1",
            body="Fran\u00e7ais, d\u00e9j\u00e0 vu\n",
        ),
        b"Subject: lone CR\r\n\r\nline one\rline two\r\n",
    ]
    flags = [
        [b"\\Seen"],
        [b"\\Flagged", b"$Label1"],
        [],
        [b"\\Draft"],
        [b"\\Answered", b"$MDNSent"],
        [],
        [],
    ]
    with imap_server.connect(source) as client:
        fill(
            client,
            "INBOX",
            [(raw, f, WHEN) for raw, f in zip(awkward, flags, strict=True)],
        )
    result, _ = copy(imap_server, source, imap_server, destination)
    assert result.outcome == Outcome.DONE, result.reason
    assert (result.copied, result.errors) == (len(awkward), 0)
    assert result.bytes >= 20 * 1024 * 1024
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "INBOX", dst, "INBOX") == len(awkward)
        assert [m.flags for m in read(dst, "INBOX")][:2] == [
            ("\\Seen",),
            ("$Label1", "\\Flagged"),
        ]


def test_internaldate_keeps_instant_and_offset(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    dates = [
        dt.datetime(2024, 3, 31, 1, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        dt.datetime(2001, 1, 1, 0, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30))),
        dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
    ]
    with imap_server.connect(source) as client:
        fill(
            client,
            "INBOX",
            [(make_message(seed=i), [], d) for i, d in enumerate(dates)],
        )
    result, _ = copy(imap_server, source, imap_server, destination)
    assert result.outcome == Outcome.DONE
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        before = [m.internaldate for m in read(src, "INBOX")]
        after = [m.internaldate for m in read(dst, "INBOX")]
    assert after == before == dates
    assert [d.utcoffset() for d in after] == [d.utcoffset() for d in before]


def test_shared_and_missing_message_ids_all_arrive(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    messages = [make_message(seed=i, message_id="<same@example.org>", subject=f"twin {i}") for i in range(3)]
    messages += [make_message(seed=9, message_id=None)] * 2  # two identical messages without Message-ID
    messages += [make_message(seed=i, message_id=None, subject=f"none {i}") for i in range(3)]
    with imap_server.connect(source) as client:
        fill(client, "Drafts", [(m, [], WHEN) for m in messages])
    result, store = copy(imap_server, source, imap_server, destination)
    assert (result.outcome, result.copied) == (Outcome.DONE, len(messages))
    again, _ = copy(imap_server, source, imap_server, destination, store=store)
    # Everything is already there: counted as skipped, nothing copied again.
    assert (again.copied, again.skipped, again.errors) == (0, len(messages), 0)
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "Drafts", dst, "Drafts") == len(messages)


@pytest.mark.parametrize("list_status", [True, False], ids=["list-status", "status-per-folder"])
def test_second_run_copies_nothing_and_reads_no_bodies(imap_server, make_imap_user, list_status):
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        fill(
            client,
            "INBOX",
            [(make_message(seed=i), [b"\\Seen"], WHEN) for i in range(40)],
        )
        fill(
            client,
            "Work/2024",
            [(make_message(seed=100 + i), [], WHEN) for i in range(10)],
        )
    result, store = copy(imap_server, source, imap_server, destination)
    assert result.copied == 50
    hide = None if list_status else hiding_capabilities(b"LIST-STATUS")
    with CommandRecorder(imap_server.imap_port, server_filter=hide) as recorder:
        mailbox = imap_server.mailbox(source)
        from dataclasses import replace

        again = copy_account(
            replace(mailbox, port=recorder.port),
            imap_server.mailbox(destination),
            state=store,
        )
    assert (again.outcome, again.copied, again.skipped, again.errors) == (Outcome.DONE, 0, 50, 0)
    verbs = recorder.verbs()
    assert "UID FETCH" not in verbs and "FETCH" not in verbs
    assert "EXAMINE" not in verbs  # nothing changed: HIGHESTMODSEQ was enough
    if list_status:
        # One LIST brought every folder's HIGHESTMODSEQ (RFC 5819): no STATUS round trip per folder.
        assert "STATUS" not in verbs
        assert [line for line in recorder.commands if b"LIST" in line and b"HIGHESTMODSEQ" in line]
    else:
        assert verbs.count("STATUS") >= 2  # INBOX and Work/2024, one by one


def test_new_messages_are_found_and_copied_incrementally(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(make_message(seed=i), [], WHEN) for i in range(20)])
        result, store = copy(imap_server, source, imap_server, destination)
        assert result.copied == 20
        fill(client, "INBOX", [(make_message(seed=100 + i), [], WHEN) for i in range(3)])
        fill(client, "New folder", [(make_message(seed=200), [], WHEN)])
    again, _ = copy(imap_server, source, imap_server, destination, store=store)
    assert (again.copied, again.errors) == (4, 0)
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "INBOX", dst, "INBOX") == 23
        assert assert_same_folder(src, "New folder", dst, "New folder") == 1
    # Nothing new: the state is read, and not written again (a write costs a transaction in a task).
    saves = store.saves
    nothing, _ = copy(imap_server, source, imap_server, destination, store=store)
    assert (nothing.copied, nothing.skipped, store.saves) == (0, 24, saves)


def test_flag_changes_on_the_source_reach_the_destination(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        uids = fill(
            client,
            "INBOX",
            [(make_message(seed=i), [b"\\Seen"], WHEN) for i in range(6)],
        )
        result, store = copy(imap_server, source, imap_server, destination)
        assert result.copied == 6
        client.select_folder("INBOX")
        client.add_flags([uids[1]], [b"\\Flagged", b"$Important"])
        client.remove_flags([uids[2]], [b"\\Seen"])
        client.unselect_folder()
    again, _ = copy(imap_server, source, imap_server, destination, store=store)
    assert (again.copied, again.errors) == (0, 0)
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "INBOX", dst, "INBOX") == 6
        flags = [m.flags for m in read(dst, "INBOX")]
    assert flags[1] == ("$Important", "\\Flagged", "\\Seen")
    assert flags[2] == ()


def test_uidvalidity_change_rematches_without_duplicates(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    messages = [make_message(seed=i) for i in range(8)] + [make_message(seed=50, message_id=None)] * 2
    with imap_server.connect(source) as client:
        fill(client, "Archive", [(m, [], WHEN) for m in messages])
        fill(client, "Other", [(make_message(seed=70), [], WHEN)])
        result, store = copy(imap_server, source, imap_server, destination)
        assert result.copied == 11
        old_validity = store.folders["Archive"].uidvalidity
        # Deleting and recreating the folder gives it a new UIDVALIDITY; add one new message.
        client.delete_folder("Archive")
        fill(
            client,
            "Archive",
            [(m, [], WHEN) for m in messages + [make_message(seed=60)]],
        )
        other_state = store.folders["Other"]
    again, _ = copy(imap_server, source, imap_server, destination, store=store)
    assert again.outcome == Outcome.DONE
    # The re-matched Archive messages and the one message of Other are already there.
    assert (again.copied, again.skipped) == (1, len(messages) + 1)
    assert any("UIDVALIDITY" in w for f in again.folders for w in f.warnings)
    assert store.folders["Archive"].uidvalidity != old_validity
    assert store.folders["Other"] == other_state  # the other folder's record is untouched
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "Archive", dst, "Archive") == len(messages) + 1


def test_prepopulated_destination_gets_only_what_is_missing(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    twins = [make_message(seed=7, message_id="<twin@example.org>")] * 3
    others = [make_message(seed=i) for i in range(6)]
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(m, [], WHEN) for m in others + twins])
    with imap_server.connect(destination) as client:
        # Another tool already copied half of the mail, and one of the three identical twins.
        fill(client, "INBOX", [(m, [], WHEN) for m in others[:3] + twins[:1]])
    result, _ = copy(imap_server, source, imap_server, destination)
    assert result.outcome == Outcome.DONE
    assert (result.copied, result.skipped) == (5, 4)
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "INBOX", dst, "INBOX") == 9


@pytest.mark.parametrize("connections", [1, 3])
def test_parallel_connections_stay_within_the_limit(imap_server, make_imap_user, connections):
    from dataclasses import replace

    from tests.support.faultproxy import FaultProxy

    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        for name in ("INBOX", "A", "B", "C"):
            fill(
                client,
                name,
                [(make_message(seed=f"{name}{i}"), [], WHEN) for i in range(150)],
            )
    with (
        FaultProxy(imap_server.imap_port) as src_proxy,
        FaultProxy(imap_server.imap_port) as dst_proxy,
    ):
        result = copy_account(
            replace(imap_server.mailbox(source), port=src_proxy.port),
            replace(imap_server.mailbox(destination), port=dst_proxy.port),
            state=MemoryStateStore(),
            connections=connections,
        )
        assert result.copied == 600
        assert src_proxy.max_concurrent <= connections
        assert dst_proxy.max_concurrent <= connections
        if connections > 1:
            assert src_proxy.max_concurrent > 1  # the work really was spread
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        for name in ("INBOX", "A", "B", "C"):
            assert assert_same_folder(src, name, dst, name) == 150


def test_source_gets_only_read_commands_and_keeps_its_flags(imap_server, make_imap_user):
    from dataclasses import replace

    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        fill(
            client,
            "INBOX",
            [(make_message(seed=i), [] if i % 2 else [b"\\Seen"], WHEN) for i in range(12)],
        )
        fill(
            client,
            "Sent",
            [(make_message(seed=40 + i), [b"\\Answered"], WHEN) for i in range(3)],
        )
        before = {f: read(client, f) for f in ("INBOX", "Sent")}
    with CommandRecorder(imap_server.imap_port) as recorder:
        mailbox = replace(imap_server.mailbox(source), port=recorder.port)
        store = MemoryStateStore()
        first = copy_account(mailbox, imap_server.mailbox(destination), state=store)
        with imap_server.connect(source) as client:
            fill(client, "INBOX", [(make_message(seed=99), [], WHEN)])
        second = copy_account(mailbox, imap_server.mailbox(destination), state=store)
    assert (first.copied, second.copied) == (15, 1)
    allowed = {
        "CAPABILITY", "LOGIN", "ENABLE", "NAMESPACE", "LIST", "LSUB", "STATUS", "EXAMINE", "UNSELECT",
        "UID FETCH", "UID SEARCH", "LOGOUT", "NOOP",
    }  # fmt: skip
    verbs = recorder.verbs()
    assert set(verbs) <= allowed, set(verbs) - allowed
    fetches = [c for c in recorder.commands if b" FETCH " in c.upper()]
    assert fetches and all(b"BODY[" not in c.upper() and b"RFC822 " not in c.upper() for c in fetches)
    with imap_server.connect(source) as client:
        after = {f: read(client, f) for f in ("INBOX", "Sent")}
    assert [m.flags for m in after["INBOX"][:12]] == [m.flags for m in before["INBOX"]]
    assert [m.flags for m in after["Sent"]] == [m.flags for m in before["Sent"]]


def test_folder_names_from_slash_server_to_dotted_prefix_server_and_back(
    imap_server, imap_server_dotted, make_imap_user
):
    source = make_imap_user()
    dotted = make_imap_user(imap_server_dotted)
    back = make_imap_user()
    names = {
        "INBOX": "INBOX",
        "A&B": "INBOX.A&B",
        "Отправленные": "INBOX.Отправленные",
        "Entwürfe/2024 Q1": "INBOX.Entwürfe.2024 Q1",
        "x.y": "INBOX.x_y",
        "R&AOk-ponses 1200+1201": "INBOX.R&AOk-ponses 1200+1201",
        "Sent": "INBOX.Sent",
    }
    with imap_server.connect(source) as client:
        for i, name in enumerate(names):
            fill(
                client,
                name,
                [(make_message(seed=f"{name}{j}"), [b"\\Seen"], WHEN) for j in range(i % 3 + 1)],
            )
    there = copy_account(
        imap_server.mailbox(source),
        imap_server_dotted.mailbox(dotted),
        state=MemoryStateStore(),
    )
    assert (there.outcome, there.errors) == (Outcome.DONE, 0), there.warnings
    with imap_server.connect(source) as src, imap_server_dotted.connect(dotted) as dst:
        present = set(folder_names(dst))
        for name, target in names.items():
            assert target in present
            assert_same_folder(src, name, dst, target)
    home = copy_account(
        imap_server_dotted.mailbox(dotted),
        imap_server.mailbox(back),
        state=MemoryStateStore(),
    )
    assert (home.outcome, home.errors) == (Outcome.DONE, 0), home.warnings
    with imap_server.connect(source) as src, imap_server.connect(back) as dst:
        present = set(folder_names(dst))
        for name in names:
            expected = "x_y" if name == "x.y" else name
            assert expected in present
            assert_same_folder(src, name, dst, expected)


def test_explicit_mapping_and_skip(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        fill(client, "Old", [(make_message(seed=1), [], WHEN)])
        fill(client, "Spam", [(make_message(seed=2), [], WHEN)])
    result, _ = copy(
        imap_server,
        source,
        imap_server,
        destination,
        folder_mapping={"Old": "Archive/Old", "Spam": ""},
    )
    assert (result.outcome, result.copied) == (Outcome.DONE, 2 - 1)
    with imap_server.connect(destination) as dst:
        present = folder_names(dst)
        assert "Archive/Old" in present and "Spam" not in present
    folders = {f.source: f for f in result.folders}
    assert (folders["Spam"].destination, folders["Spam"].copied) == (None, 0)
    assert (folders["Old"].destination, folders["Old"].copied) == ("Archive/Old", 1)


def test_merging_two_folders_is_reported_not_done(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        fill(client, "A", [(make_message(seed=1), [], WHEN)])
        fill(client, "B", [(make_message(seed=2), [], WHEN)])
    result, _ = copy(
        imap_server,
        source,
        imap_server,
        destination,
        folder_mapping={"A": "X", "B": "X"},
    )
    assert result.copied == 1 and result.errors == 1
    assert any("would both be copied into 'X'" in w for w in result.warnings)


def test_cancel_between_batches_keeps_what_was_copied(imap_server, make_imap_user, monkeypatch):
    from runs.engine import worker

    monkeypatch.setattr(worker, "BATCH_MESSAGES", 10)
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(make_message(seed=i), [], WHEN) for i in range(300)])
    seen = []

    def stop_after_some() -> bool:
        return bool(seen) and seen[-1].copied >= 20

    original = worker._Worker._finish_batch
    batches = []

    def paced(self, dst, sent, **kwargs):
        original(self, dst, sent, **kwargs)
        batches.append(len(sent.uids))
        if len(batches) >= 2:  # let the main thread see the progress before going on
            self.run_.stop.wait(5)

    monkeypatch.setattr(worker._Worker, "_finish_batch", paced)

    result, store = copy(
        imap_server,
        source,
        imap_server,
        destination,
        on_progress=seen.append,
        should_stop=stop_after_some,
        connections=1,
    )
    assert result.outcome == Outcome.CANCELLED
    assert 20 <= result.copied < 300
    assert len(store.folders["INBOX"].copied_uids) > 0
    with imap_server.connect(destination) as dst:
        assert len(read(dst, "INBOX")) == result.copied
    monkeypatch.setattr(worker._Worker, "_finish_batch", original)
    rest, _ = copy(imap_server, source, imap_server, destination, store=store)
    assert rest.outcome == Outcome.DONE and rest.copied == 300 - result.copied
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "INBOX", dst, "INBOX") == 300
    assert seen[-1].folder == "INBOX" and seen[-1].total_messages == 300


def test_flag_changes_are_carried_without_condstore_too(imap_server, make_imap_user, monkeypatch):
    from runs.engine import imap as wire

    original = wire.Connection.has

    def has(self, capability):
        if self.read_only and capability.upper() == "CONDSTORE":
            return False  # a source server without CONDSTORE
        return original(self, capability)

    monkeypatch.setattr(wire.Connection, "has", has)
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        uids = fill(client, "INBOX", [(make_message(seed=i), [], WHEN) for i in range(4)])
        result, store = copy(imap_server, source, imap_server, destination)
        assert result.copied == 4 and store.folders["INBOX"].highest_modseq is None
        client.select_folder("INBOX")
        client.add_flags([uids[0], uids[3]], [b"\\Seen", b"$Done"])
        client.unselect_folder()
    again, _ = copy(imap_server, source, imap_server, destination, store=store)
    assert (again.copied, again.errors) == (0, 0)
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "INBOX", dst, "INBOX") == 4
        assert [m.flags for m in read(dst, "INBOX")] == [("$Done", "\\Seen"), (), (), ("$Done", "\\Seen")]


def test_an_empty_folder_is_created_but_neither_opened_nor_recorded(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        client.create_folder("Empty")
        fill(client, "INBOX", [(make_message(seed=1), [], WHEN)])
    result, store = copy(imap_server, source, imap_server, destination)
    assert (result.outcome, result.copied) == ("done", 1)
    empty = next(f for f in result.folders if f.source == "Empty")
    assert (empty.source_messages, empty.destination_messages, empty.copied) == (0, 0, 0)
    assert "Empty" not in store.folders and "INBOX" in store.folders
    with imap_server.connect(destination) as dst:
        assert dst.folder_exists("Empty")


def test_a_first_copy_opens_each_source_folder_once_and_a_sparse_one_is_searched(imap_server, make_imap_user):
    # STATUS (MESSAGES 10, UIDNEXT 11) gives INBOX's UIDs: planning does not open it to SEARCH; the worker
    # opens it once to copy. "Work" lost messages to an expunge: its UIDs have gaps, so they are searched.
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(make_message(seed=f"in{i}"), [], WHEN) for i in range(10)])
        fill(client, "Work", [(make_message(seed=f"w{i}"), [], WHEN) for i in range(6)])
        client.select_folder("Work")
        client.add_flags([2, 5], [b"\\Deleted"])
        client.expunge()
    with CommandRecorder(imap_server.imap_port) as recorder:
        from dataclasses import replace

        result = copy_account(
            replace(imap_server.mailbox(source), port=recorder.port),
            imap_server.mailbox(destination),
            state=MemoryStateStore(),
        )
    assert (result.outcome, result.copied, result.errors) == (Outcome.DONE, 14, 0)
    examined = [line.split(b" ", 2)[2] for line in recorder.commands if b" EXAMINE " in line]
    assert examined.count(b'"INBOX"') == 1
    assert examined.count(b'"Work"') == 2  # planning's SEARCH, then the worker
    assert [line for line in recorder.commands if b"SEARCH" in line]
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "INBOX", dst, "INBOX") == 10
        assert assert_same_folder(src, "Work", dst, "Work") == 4


@pytest.mark.parametrize(
    ("status", "uids"),
    [
        ({"MESSAGES": 3, "UIDNEXT": 4}, "1:3"),
        ({"MESSAGES": 3, "UIDNEXT": 9}, None),  # gaps: expunged messages
        ({"MESSAGES": 0, "UIDNEXT": 1}, None),
        ({"MESSAGES": 3}, None),  # no UIDNEXT asked or given
    ],
)
def test_status_gives_the_uids_only_of_a_folder_without_gaps(status, uids):
    from runs.engine.planning import every_uid

    found = every_uid(status)
    assert (str(found) if found is not None else None) == uids


@pytest.mark.parametrize(
    ("case", "asks_sizes"),
    [("fits", False), ("no STATUS=SIZE", True), ("above the batch budget", True), ("above APPENDLIMIT", True)],
)
def test_a_folder_that_fits_one_batch_is_read_without_asking_sizes_first(
    imap_server, make_imap_user, monkeypatch, case, asks_sizes
):
    # STATUS SIZE (RFC 8438) says the whole folder fits one batch: the bodies are fetched at once. Without
    # SIZE, or when it does not fit the batch or the destination's APPENDLIMIT, each size is asked first.
    from dataclasses import replace

    from runs.engine import imap, worker

    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(make_message(seed=f"fit{i}"), [b"\\Seen"], WHEN) for i in range(4)])
    if case == "above the batch budget":
        monkeypatch.setattr(worker, "BATCH_BYTES", 1000)
    if case == "above APPENDLIMIT":
        monkeypatch.setattr(
            imap.Connection, "append_limit", property(lambda self: 10_000_000 if self.read_only else 1000)
        )
    totals = []
    hide = hiding_capabilities(b"STATUS=SIZE") if case == "no STATUS=SIZE" else None
    with CommandRecorder(imap_server.imap_port, server_filter=hide) as recorder:
        result = copy_account(
            replace(imap_server.mailbox(source), port=recorder.port),
            imap_server.mailbox(destination),
            state=MemoryStateStore(),
            on_progress=lambda p: totals.append(p.total_bytes),
        )
    sizes_asked = any(b"FETCH" in line and b"(RFC822.SIZE)" in line for line in recorder.commands)
    assert sizes_asked is asks_sizes, recorder.commands
    assert (result.outcome, result.copied, result.errors) == (Outcome.DONE, 4, 0)
    assert totals[-1] == result.bytes > 0  # the progress total counts the bodies either way
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "INBOX", dst, "INBOX") == 4
