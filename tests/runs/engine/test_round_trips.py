"""Round trips on the destination per batch (issue 14): the APPENDs (one, LITERAL+) and the check of
what was stored (one: EXAMINE, UID FETCH and the leave-again pipelined), no STATUS for the
crash-window floor where APPENDUID or planning already gave one; and that floor still a lower bound
of the UIDs the batch's copies get. The stored-check is run on each server: Dovecot and Cyrus
(UNSELECT; Cyrus with DIGEST.SHA1) and Courier (no UNSELECT, refuses APPEND into a mailbox it has open
read-only)."""

from __future__ import annotations

import datetime as dt
import imaplib
import threading
from collections import defaultdict
from dataclasses import replace

import pytest
from imapclient.exceptions import IMAPClientError

from runs.engine import Outcome, copy_account
from runs.engine.append import AppendItem, AppendOutcome, append_many
from runs.engine.connect import connect
from runs.engine.filestate import MemoryStateStore
from runs.engine.uidset import UidSet
from runs.engine.verify import stored_alterations
from tests.runs.engine.helpers import ResponseRewriter
from tests.runs.engine.test_identity import _without_uidplus
from tests.support.dovecot import fill, make_message, read

pytestmark = pytest.mark.imap

WHEN = dt.datetime(2022, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


class RoundTrips:
    """Counts, per imaplib connection, the commands sent and the flights: runs of sends with no
    read in between (one flight = one round trip); only in threads whose name starts with `thread`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, thread: str = "") -> None:
        self.flights: dict[int, int] = defaultdict(int)
        self.commands: dict[int, list[bytes]] = defaultdict(list)
        self._sending: dict[int, bool] = {}
        send, readline = imaplib.IMAP4.send, imaplib.IMAP4.readline

        def counted_send(imap: imaplib.IMAP4, data: bytes) -> None:
            if threading.current_thread().name.startswith(thread):
                if not self._sending.get(id(imap)):
                    self.flights[id(imap)] += 1
                self._sending[id(imap)] = True
                head = bytes(data[:60])
                if head[:1].isalpha() and b" " in head:  # a command line, not a literal's bytes
                    self.commands[id(imap)].append(head.split()[1].upper())
            return send(imap, data)

        def counted_readline(imap: imaplib.IMAP4) -> bytes:
            self._sending[id(imap)] = False
            return readline(imap)

        monkeypatch.setattr(imaplib.IMAP4, "send", counted_send)
        monkeypatch.setattr(imaplib.IMAP4, "readline", counted_readline)

    def appending(self) -> tuple[int, list[bytes]]:
        """(flights, command verbs) of the one connection that sent APPEND."""
        [key] = [key for key, verbs in self.commands.items() if b"APPEND" in verbs]
        return self.flights[key], self.commands[key]


def test_a_batch_costs_the_destination_two_round_trips(imap_server, make_imap_user, monkeypatch):
    from runs.engine import worker

    monkeypatch.setattr(worker, "BATCH_MESSAGES", 5)
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(make_message(seed=f"rt{i}"), [b"\\Seen"], WHEN) for i in range(20)])
    trips = RoundTrips(monkeypatch, thread="imapcopier-worker")
    result = copy_account(
        imap_server.mailbox(source), imap_server.mailbox(destination), state=MemoryStateStore(), connections=1
    )
    assert (result.outcome, result.copied, result.errors, result.altered) == (Outcome.DONE, 20, 0, 0)
    flights, verbs = trips.appending()
    assert verbs.count(b"APPEND") == 20
    # 4 batches: APPENDs, then EXAMINE + UID FETCH + UNSELECT; the floor from planning, then APPENDUID.
    assert b"STATUS" not in verbs, verbs
    assert (verbs.count(b"EXAMINE"), verbs.count(b"UID"), verbs.count(b"UNSELECT")) == (4, 4, 4)
    assert flights == 2 * 4, verbs


def _recorded_floors(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The crash-window floor of every batch, in the order the worker chose them (worker._Worker._floor)."""
    from runs.engine import worker

    floors: list[int] = []
    original = worker._Worker._floor

    def floor(self, dst, job):
        floors.append(original(self, dst, job))
        return floors[-1]

    monkeypatch.setattr(worker._Worker, "_floor", floor)
    return floors


def test_the_crash_window_floor_is_the_first_uid_each_batch_gets(imap_server, make_imap_user, monkeypatch):
    """The floor recorded with a batch's intent is a lower bound of its copies' UIDs (the crash-window
    rule), and with APPENDUID an exact one; on a destination that already holds mail the first batch's
    floor is the UIDNEXT planning saw."""
    from runs.engine import worker

    monkeypatch.setattr(worker, "BATCH_MESSAGES", 4)
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(destination) as client:
        fill(client, "INBOX", [(make_message(seed=f"there{i}"), [], WHEN) for i in range(3)])
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(make_message(seed=f"fl{i}"), [], WHEN) for i in range(12)])
    floors = _recorded_floors(monkeypatch)
    saved: list[tuple[str, int | None]] = []

    class Store(MemoryStateStore):
        def save(self, state):
            saved.append((state.pending_uids, state.pending_uidnext))
            super().save(state)

    store = Store()
    result = copy_account(imap_server.mailbox(source), imap_server.mailbox(destination), state=store, connections=1)
    assert (result.outcome, result.copied, result.skipped) == (Outcome.DONE, 12, 0)
    with imap_server.connect(destination) as client:
        dest_uids = [m.uid for m in read(client, "INBOX")]
    assert len(dest_uids) == 15
    first_uids = [dest_uids[3 + 4 * batch] for batch in range(3)]
    assert floors == first_uids  # exact: planning's UIDNEXT, then the last APPENDUID + 1
    copies = _copies(store)
    for pending, uidnext in saved:
        if pending:
            assert uidnext is not None
            assert uidnext <= min(copies[uid] for uid in UidSet.parse(pending)), (pending, uidnext)
    assert store.folders["INBOX"].pending_uids == ""


def test_without_uidplus_later_batches_take_their_floor_from_status(imap_server, make_imap_user, monkeypatch):
    """No APPENDUID to learn from: the first batch of the folder uses planning's UIDNEXT, every later
    batch asks STATUS as before (planning's figure would be below the earlier batches' copies, which
    no UID map tells apart)."""
    from runs.engine import worker

    monkeypatch.setattr(worker, "BATCH_MESSAGES", 4)
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(make_message(seed=f"np{i}"), [], WHEN) for i in range(12)])
    floors = _recorded_floors(monkeypatch)
    with ResponseRewriter(imap_server.imap_port, _without_uidplus) as plain:
        trips = RoundTrips(monkeypatch, thread="imapcopier-worker")
        result = copy_account(
            imap_server.mailbox(source),
            replace(imap_server.mailbox(destination), port=plain.port),
            state=MemoryStateStore(),
            connections=1,
        )
    assert (result.outcome, result.copied, result.errors) == (Outcome.DONE, 12, 0)
    _flights, verbs = trips.appending()
    assert verbs.count(b"STATUS") == 2  # batches 2 and 3
    assert floors == [1, 5, 9]


def _copies(store: MemoryStateStore) -> dict[int, int]:
    from runs.engine.folderstate import UidMap

    return dict(UidMap.parse(store.folders["INBOX"].uid_map).items())


@pytest.fixture(params=["dovecot", "cyrus", "courier"])
def any_server(request):
    if request.param == "dovecot":
        return request.getfixturevalue("imap_server")
    return request.getfixturevalue(f"{request.param}_server")


def test_the_stored_check_is_one_round_trip_and_finds_an_altered_message(any_server, monkeypatch):
    user = any_server.add_user()
    messages = [make_message(subject=f"check {i}", seed=f"sc{i}") for i in range(3)]
    connection = connect(any_server.mailbox(user), read_only=False)
    try:
        outcomes: list[AppendOutcome] = []
        append_many(connection, "INBOX", [AppendItem(raw=m, flags=(), when=None) for m in messages], outcomes)
        uids = [o.uid for o in outcomes]
        assert all(uids), outcomes
        trips = RoundTrips(monkeypatch)
        sent = [(uids[0], messages[0]), (uids[1], messages[1] + b"more\r\n"), (uids[2], messages[2])]
        [altered] = stored_alterations(connection, "INBOX", sent)
        assert altered.destination_uid == uids[1]
        assert "stored where" in altered.what
        assert connection.selected is None
        assert stored_alterations(connection, "INBOX", list(zip(uids, messages, strict=True))) == []
        [flights] = trips.flights.values()
        # The first check also opened the folder again for the suspect's body (3 more round trips).
        assert flights == 1 + 3 + 1
        # Left unselected: Courier would refuse an APPEND into a mailbox this session has open read-only.
        again: list[AppendOutcome] = []
        append_many(connection, "INBOX", [AppendItem(raw=make_message(seed="after"), flags=(), when=None)], again)
        assert again[0].ok, again[0].text
    finally:
        connection.close()


def test_a_refused_stored_check_raises_and_leaves_the_connection_in_step(any_server):
    user = any_server.add_user()
    connection = connect(any_server.mailbox(user), read_only=False)
    try:
        with pytest.raises(IMAPClientError, match="EXAMINE failed"):
            connection.fetch_examined("no-such-folder-here", UidSet.from_uids([1]), ["RFC822.SIZE"])
        assert connection.selected is None
        with pytest.raises(IMAPClientError, match="FETCH failed"):
            connection.fetch_examined("INBOX", UidSet.from_uids([1]), ["NO-SUCH-ITEM"])
        assert connection.selected is None
        # Every answer was read: the next command gets its own.
        assert "MESSAGES" in connection.status("INBOX", ["MESSAGES"])
        outcomes: list[AppendOutcome] = []
        append_many(connection, "INBOX", [AppendItem(raw=make_message(seed="in step"), flags=(), when=None)], outcomes)
        assert outcomes[0].ok, outcomes[0].text
        assert connection.fetch_examined("INBOX", UidSet.from_uids([1]), ["RFC822.SIZE"]).keys() == {1}
    finally:
        connection.close()
