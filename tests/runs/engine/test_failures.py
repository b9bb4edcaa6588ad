"""Failure paths against the real Dovecot, the fault proxy and a scripted fake server."""

from __future__ import annotations

import datetime as dt
import math
import socket
from dataclasses import replace

import pytest

from runs.engine import (
    ErrorKind,
    Outcome,
    copy_account,
    list_folders,
    plan_folders,
    test_connection,
)
from runs.engine.filestate import MemoryStateStore
from runs.engine.types import Mailbox
from runs.engine.uidset import UidSet
from tests.runs.engine.helpers import FakeServer, assert_same_folder
from tests.support.dovecot import fill, make_message, read
from tests.support.faultproxy import FaultProxy

pytestmark = pytest.mark.imap

WHEN = dt.datetime(2022, 6, 1, 12, 0, 0, tzinfo=dt.UTC)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------ connecting


def test_connection_test_succeeds_and_lists_capabilities(imap_server, imap_user):
    result = test_connection(imap_server.mailbox(imap_user))
    assert result.ok and result.kind is None
    assert "UIDPLUS" in result.capabilities and "LITERAL+" in result.capabilities
    assert result.folder_count >= 1


def test_wrong_password_is_an_auth_failure_without_the_password(imap_server, imap_user):
    mailbox = replace(imap_server.mailbox(imap_user), password="not-the-password-42")
    result = test_connection(mailbox)
    assert (result.ok, result.kind) == (False, ErrorKind.AUTH)
    assert "not-the-password-42" not in result.message and imap_user.password not in result.message
    copied = copy_account(mailbox, imap_server.mailbox(imap_user), state=MemoryStateStore())
    assert (copied.outcome, copied.error_kind) == (Outcome.FAILED, ErrorKind.AUTH)
    assert "source" in copied.reason and "not-the-password-42" not in copied.reason


def test_closed_port_is_refused(imap_server, imap_user):
    mailbox = replace(imap_server.mailbox(imap_user), port=_closed_port())
    result = test_connection(mailbox)
    assert (result.ok, result.kind) == (False, ErrorKind.REFUSED)
    assert "refused" in result.message
    copied = copy_account(mailbox, imap_server.mailbox(imap_user), state=MemoryStateStore())
    assert (copied.outcome, copied.error_kind) == (Outcome.FAILED, ErrorKind.REFUSED)


def test_unknown_host_is_unreachable(imap_server, imap_user):
    mailbox = replace(imap_server.mailbox(imap_user), host="no-such-host.invalid")
    result = test_connection(mailbox)
    assert (result.ok, result.kind) == (False, ErrorKind.UNREACHABLE)


def test_tls_verification_fails_clearly_on_a_self_signed_certificate(imap_server, imap_user):
    result = test_connection(imap_server.mailbox(imap_user, security="ssl", verify_tls=True))
    assert (result.ok, result.kind) == (False, ErrorKind.TLS)
    assert "certificate verify failed: self-signed certificate" in result.message
    starttls = test_connection(imap_server.mailbox(imap_user, security="starttls", verify_tls=True))
    assert (starttls.ok, starttls.kind) == (False, ErrorKind.TLS)


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_tls_works_with_the_ca_or_with_verification_off(imap_server, imap_user, security):
    with_ca = imap_server.mailbox(
        imap_user,
        security=security,
        verify_tls=True,
        ca_certificate=imap_server.ca_certificate,
    )
    assert test_connection(with_ca).ok
    insecure = imap_server.mailbox(imap_user, security=security, verify_tls=False)
    assert test_connection(insecure).ok


def test_tls_against_a_plain_port_is_a_tls_failure(imap_server, imap_user):
    mailbox = replace(
        imap_server.mailbox(imap_user, security="ssl", verify_tls=False),
        port=imap_server.imap_port,
    )
    result = test_connection(mailbox)
    assert (result.ok, result.kind) == (False, ErrorKind.TLS)


def test_a_stalled_server_times_out(imap_server, imap_user):
    with FaultProxy(imap_server.imap_port) as proxy:
        proxy.stall_new(connections=None)
        mailbox = replace(imap_server.mailbox(imap_user), port=proxy.port, timeout=0.5)
        result = test_connection(mailbox)
        assert (result.ok, result.kind) == (False, ErrorKind.TIMEOUT)
        copied = copy_account(mailbox, imap_server.mailbox(imap_user), state=MemoryStateStore())
        assert (copied.outcome, copied.error_kind) == (
            Outcome.FAILED,
            ErrorKind.TIMEOUT,
        )


def _fake(capabilities: str, list_reply: str):
    def handler(tag: str, command: str) -> list[str]:
        verb = command.split(" ")[0].upper()
        if verb == "CAPABILITY":
            return [f"* CAPABILITY {capabilities}", f"{tag} OK done"]
        if verb == "LOGIN":
            return [f"{tag} OK [CAPABILITY {capabilities}] logged in"]
        if verb == "LIST":
            return [f"{tag} {list_reply}"]
        if verb == "LOGOUT":
            return ["* BYE bye", f"{tag} OK bye"]
        return [f"{tag} BAD User is authenticated but not connected."]

    return FakeServer(b"* OK fake ready\r\n", handler)


def test_login_accepted_but_work_refused_is_its_own_kind():
    with _fake("IMAP4rev1 STARTTLS", "BAD User is authenticated but not connected.") as server:
        mailbox = Mailbox("127.0.0.1", server.port, "plain", "someone", "secret")
        result = test_connection(mailbox)
    assert (result.ok, result.kind) == (False, ErrorKind.REFUSED_WORK)
    assert "authenticated but not connected" in result.message


def test_examine_refused_after_list_is_refused_work():
    with _fake("IMAP4rev1", "OK LIST done") as server:
        mailbox = Mailbox("127.0.0.1", server.port, "plain", "someone", "secret")
        result = test_connection(mailbox)
    assert (result.ok, result.kind) == (False, ErrorKind.REFUSED_WORK)
    assert "INBOX" in result.message


def test_starttls_is_never_downgraded():
    with _fake("IMAP4rev1", "OK LIST done") as server:
        mailbox = Mailbox("127.0.0.1", server.port, "starttls", "someone", "secret")
        result = test_connection(mailbox)
    assert (result.ok, result.kind) == (False, ErrorKind.TLS)
    assert "STARTTLS" in result.message


def test_list_folders_with_counts(imap_server, imap_user):
    with imap_server.connect(imap_user) as client:
        fill(client, "Отчёты", [(make_message(seed=i), [], WHEN) for i in range(3)])
    folders = {f.name: f for f in list_folders(imap_server.mailbox(imap_user), with_counts=True)}
    assert folders["Отчёты"].messages == 3 and folders["Отчёты"].size > 0
    assert folders["Sent"].special_use == "\\Sent"
    assert folders["INBOX"].delimiter == "/"


def test_plan_folders_against_two_servers(imap_server, imap_server_dotted, make_imap_user):
    source, destination = make_imap_user(), make_imap_user(imap_server_dotted)
    with imap_server.connect(source) as client:
        fill(client, "Projects/Alpha", [(make_message(seed=1), [], WHEN)])
    plans = {
        p.source: p for p in plan_folders(imap_server.mailbox(source), imap_server_dotted.mailbox(destination), None)
    }
    assert plans["Projects/Alpha"].destination == "INBOX.Projects.Alpha"
    assert (plans["Sent"].destination, plans["Sent"].rule) == (
        "INBOX.Sent",
        "special-use",
    )


# --------------------------------------------------------------- refused messages


def test_a_refused_message_is_recorded_and_the_copy_goes_on(imap_server, make_imap_user):
    source = make_imap_user()
    destination = make_imap_user(max_message_bytes=50_000, advertise_appendlimit=False)
    big = make_message(seed=1, subject="Too big to land", attachment_size=80_000)
    with imap_server.connect(source) as client:
        uids = fill(
            client,
            "INBOX",
            [
                (make_message(seed=0), [], WHEN),
                (big, [], WHEN),
                (make_message(seed=2), [], WHEN),
            ],
        )
    store = MemoryStateStore()
    result = copy_account(imap_server.mailbox(source), imap_server.mailbox(destination), state=store)
    assert result.outcome == Outcome.DONE
    assert (result.copied, result.errors) == (2, 1)
    [error] = result.message_errors
    assert (error.folder, error.uid, error.size, error.subject) == (
        "INBOX",
        uids[1],
        len(big),
        "Too big to land",
    )
    assert error.reason.startswith("NO [LIMIT] Mail size is larger than the maximum size")
    assert UidSet.parse(store.folders["INBOX"].copied_uids) == UidSet.from_uids([uids[0], uids[2]])
    with imap_server.connect(destination) as dst:
        assert len(read(dst, "INBOX")) == 2


def test_quota_refusal_is_recorded(imap_server, make_imap_user):
    source = make_imap_user()
    destination = make_imap_user(quota_bytes=40_000)
    with imap_server.connect(source) as client:
        fill(
            client,
            "INBOX",
            [(make_message(seed=i, attachment_size=9_000), [], WHEN) for i in range(8)],
        )
    result = copy_account(
        imap_server.mailbox(source),
        imap_server.mailbox(destination),
        state=MemoryStateStore(),
    )
    assert result.outcome == Outcome.DONE
    assert result.errors >= 1 and result.copied >= 1 and result.copied + result.errors == 8
    assert all("quota" in e.reason.lower() for e in result.message_errors)


def test_over_appendlimit_is_skipped_before_upload(imap_server, make_imap_user):
    source = make_imap_user()
    destination = make_imap_user(max_message_bytes=50_000, advertise_appendlimit=True)
    big = make_message(seed=1, subject="Über limit", attachment_size=80_000)
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(big, [], WHEN), (make_message(seed=2), [], WHEN)])
    with FaultProxy(imap_server.imap_port) as proxy:
        mailbox = replace(imap_server.mailbox(destination), port=proxy.port)
        result = copy_account(imap_server.mailbox(source), mailbox, state=MemoryStateStore())
        uploaded = sum(p.from_client for p in list(proxy._pipes)) if proxy._pipes else None
    assert (result.copied, result.errors) == (1, 1)
    [error] = result.message_errors
    assert "APPENDLIMIT (50000 bytes): skipped before upload" in error.reason
    assert error.subject == "Über limit"
    if uploaded is not None:
        assert uploaded < len(big)


# ------------------------------------------------------------- broken connections


def _fill_some(imap_server, user, count=60, size=20_000):
    with imap_server.connect(user) as client:
        return fill(
            client,
            "INBOX",
            [(make_message(seed=i, attachment_size=size), [b"\\Seen"], WHEN) for i in range(count)],
        )


def test_a_cut_mid_fetch_is_resumed_without_loss_or_duplicates(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    _fill_some(imap_server, source)
    with FaultProxy(imap_server.imap_port) as proxy:
        proxy.cut_after(server_bytes=300_000, connections=2)
        mailbox = replace(imap_server.mailbox(source), port=proxy.port)
        result = copy_account(
            mailbox,
            imap_server.mailbox(destination),
            state=MemoryStateStore(),
            connections=1,
        )
        assert proxy.faults_fired >= 1
    assert (result.outcome, result.copied, result.errors) == (Outcome.DONE, 60, 0), result.reason
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "INBOX", dst, "INBOX") == 60


@pytest.mark.parametrize("client_bytes", [150_000, 700_000])
def test_a_cut_mid_append_is_resumed_without_loss_or_duplicates(imap_server, make_imap_user, client_bytes):
    source, destination = make_imap_user(), make_imap_user()
    _fill_some(imap_server, source)
    with FaultProxy(imap_server.imap_port) as proxy:
        proxy.cut_after(client_bytes=client_bytes, connections=2)
        mailbox = replace(imap_server.mailbox(destination), port=proxy.port)
        result = copy_account(
            imap_server.mailbox(source),
            mailbox,
            state=MemoryStateStore(),
            connections=1,
        )
        assert proxy.faults_fired >= 1
    assert (result.outcome, result.copied, result.errors) == (Outcome.DONE, 60, 0), result.reason
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "INBOX", dst, "INBOX") == 60


def test_a_lost_append_confirmation_does_not_duplicate(imap_server, make_imap_user, monkeypatch):
    """The APPENDs reach the server but the connection dies before their OK: nothing is sent twice."""
    from runs.engine import append
    from runs.engine import imap as wire

    source, destination = make_imap_user(), make_imap_user()
    _fill_some(imap_server, source, count=30, size=1_000)
    original = append.PendingAppends.collect
    calls = {"n": 0}

    def lose_the_answers(self):
        calls["n"] += 1
        if calls["n"] == 2:
            original(self)  # they landed ...
            self.outcomes.clear()  # ... but their answers are lost with the connection
            self.connection.client._imap.shutdown()
            raise wire.ConnectionLost("connection lost: answers never arrived")
        return original(self)

    monkeypatch.setattr(append.PendingAppends, "collect", lose_the_answers)
    from runs.engine import worker

    monkeypatch.setattr(worker, "BATCH_MESSAGES", 10)
    result = copy_account(
        imap_server.mailbox(source),
        imap_server.mailbox(destination),
        state=MemoryStateStore(),
        connections=1,
    )
    assert calls["n"] >= 3
    assert (result.outcome, result.copied, result.errors) == (Outcome.DONE, 30, 0), result.reason
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "INBOX", dst, "INBOX") == 30


def test_a_crash_between_append_and_record_is_resolved_next_run(imap_server, make_imap_user):
    """State left by a process that died after sending APPENDs: the next run finds them landed."""
    source, destination = make_imap_user(), make_imap_user()
    uids = _fill_some(imap_server, source, count=10, size=1_000)
    store = MemoryStateStore()
    first = copy_account(imap_server.mailbox(source), imap_server.mailbox(destination), state=store)
    assert first.copied == 10
    with imap_server.connect(destination) as dst:
        landed = read(dst, "INBOX")
    # Rewind the record as if the last 4 APPENDs were sent but never confirmed.
    state = store.folders["INBOX"]
    state.copied_uids = str(UidSet.from_uids(uids[:6]))
    state.pending_uids = str(UidSet.from_uids(uids[6:]))
    state.pending_uidnext = landed[6].uid
    state.highest_modseq = None
    second = copy_account(imap_server.mailbox(source), imap_server.mailbox(destination), state=store)
    assert (second.outcome, second.copied, second.errors) == (Outcome.DONE, 0, 0)
    assert UidSet.parse(store.folders["INBOX"].copied_uids) == UidSet.from_uids(uids)
    assert store.folders["INBOX"].pending_uids == ""
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "INBOX", dst, "INBOX") == 10


def test_every_batch_is_on_record_before_its_appends_and_saved_once(imap_server, make_imap_user, monkeypatch):
    """The crash window: a batch's UIDs are recorded (copied or pending) before its APPENDs go out,
    and the next batch's UIDs have already been handed over to be recorded (that write is not awaited on
    the critical path, so it may still be under way); each batch costs one state write. (It asserted the
    next batch already stored, which held only while the main thread kept up: it failed now and then.)"""
    import threading

    from runs.engine import worker

    source, destination = make_imap_user(), make_imap_user()
    uids = _fill_some(imap_server, source, count=40, size=500)
    monkeypatch.setattr(worker, "BATCH_MESSAGES", 10)
    inbox_saves = []

    class Store(MemoryStateStore):
        def save(self, state):
            if state.source_folder == "INBOX":
                inbox_saves.append(state.pending_uids)
            super().save(state)

    store = Store()
    checked = []
    original = worker.PendingAppends.send

    def send(self):
        state = store.folders["INBOX"]
        stored = UidSet.parse(state.copied_uids) | UidSet.parse(state.pending_uids)
        # The sending worker's intent: what it has handed to the main thread to record (the write may
        # still be under way: it is not awaited unless the batch about to be sent is in it).
        checked.append((stored, threading.current_thread().intent))
        return original(self)

    monkeypatch.setattr(worker.PendingAppends, "send", send)
    result = copy_account(imap_server.mailbox(source), imap_server.mailbox(destination), state=store, connections=1)
    assert (result.outcome, result.copied) == (Outcome.DONE, 40)
    assert len(checked) == 4
    for index, (stored, intended) in enumerate(checked):
        # Batch N is stored when its APPENDs go out (the crash window); batch N+1's write was already
        # asked for, with batch N-1's outcome, so the worker never waits for a write before sending.
        assert not UidSet.from_uids(uids[: 10 * (index + 1)]) - stored, index
        assert not UidSet.from_uids(uids[10 * (index + 1) : 10 * (index + 2)]) - (stored | intended), index
    assert store.folders["INBOX"].pending_uids == ""
    # Planning, the first batch's intent, one write per batch (4), the end of the copy: 7 (it was 10,
    # with a write before and one after each batch).
    assert len(inbox_saves) <= 7, inbox_saves


def test_a_state_write_that_fails_ends_the_copy_with_nothing_sent_off_the_record(
    imap_server, make_imap_user, monkeypatch
):
    """The store cannot write (disk full, a state path the process may not write): copy_account raises the
    store's error, and no APPEND goes out whose intent was not recorded, so the next run neither loses nor
    duplicates a message. Workers do not go on copying after copy_account has returned."""
    import threading

    from runs.engine import worker

    source, destination = make_imap_user(), make_imap_user()
    _fill_some(imap_server, source, count=60, size=500)
    monkeypatch.setattr(worker, "BATCH_MESSAGES", 10)

    class FullDisk(MemoryStateStore):
        def save(self, state):
            # The disk fills once a batch has been copied and recorded, while the next batches are on
            # their way: the write that fails is an intent or a result, whichever comes first.
            if UidSet.parse(self.folders["INBOX"].copied_uids if "INBOX" in self.folders else ""):
                raise OSError(28, "No space left on device")
            super().save(state)

    store = FullDisk()
    with pytest.raises(OSError, match="No space left"):
        copy_account(imap_server.mailbox(source), imap_server.mailbox(destination), state=store, connections=1)
    for thread in threading.enumerate():
        if thread.name.startswith("imapcopier-worker"):
            thread.join(30)
            assert not thread.is_alive()
    state = store.folders["INBOX"]
    on_record = UidSet.parse(state.copied_uids) | UidSet.parse(state.pending_uids)
    with imap_server.connect(destination) as client:
        arrived = len(read(client, "INBOX"))
    assert 0 < arrived <= len(on_record) < 60


@pytest.mark.parametrize("when", ["planning", "copying"])
def test_bye_mid_run_reconnects(imap_server, make_imap_user, monkeypatch, when):
    from runs.engine import worker

    monkeypatch.setattr(worker, "BATCH_MESSAGES", 5)
    source, destination = make_imap_user(), make_imap_user()
    _fill_some(imap_server, source, count=40, size=5_000)
    with FaultProxy(imap_server.imap_port) as proxy:
        mailbox = replace(imap_server.mailbox(source), port=proxy.port)
        seen = []

        def on_progress(progress):
            seen.append(progress)
            planning = when == "planning" and len(seen) == 3
            copying = when == "copying" and progress.copied >= 10 and not proxy.faults_fired
            if planning or copying:
                proxy.bye_at_next_command(open_connections=True)

        result = copy_account(
            mailbox,
            imap_server.mailbox(destination),
            state=MemoryStateStore(),
            on_progress=on_progress,
            connections=1,
        )
        assert proxy.faults_fired == 1
        assert proxy.accepted == 2
    assert (result.outcome, result.copied, result.errors) == (Outcome.DONE, 40, 0), result.reason
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "INBOX", dst, "INBOX") == 40


def test_repeated_failures_end_the_account_cleanly(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    _fill_some(imap_server, source, count=20, size=20_000)
    with FaultProxy(imap_server.imap_port) as proxy:
        store = MemoryStateStore()
        # Every connection dies once a message body starts flowing (each is 20 KB): no progress is
        # possible, not even with one message per connection.
        proxy.cut_after(server_bytes=10_000, connections=None)
        mailbox = replace(imap_server.mailbox(source), port=proxy.port)
        from runs.engine import isolation, work

        result = copy_account(mailbox, imap_server.mailbox(destination), state=store, connections=1)
        # The batch is halved down to one message (not counted as failed reconnects: each narrows
        # the search, see isolation.py), messages are blamed alone, and after BLAMED_IN_A_ROW the
        # account gives up: bounded, no loop.
        halvings = math.ceil(math.log2(20))
        blaming = isolation.TIMES_ALONE * isolation.BLAMED_IN_A_ROW
        assert proxy.accepted <= work.MAX_ATTEMPTS + halvings + blaming
    assert result.outcome == Outcome.FAILED
    assert "gave up" in result.reason


def test_a_stall_mid_copy_times_out_and_resumes(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    _fill_some(imap_server, source, count=30, size=20_000)
    with FaultProxy(imap_server.imap_port) as proxy:
        proxy.stall_after(server_bytes=200_000, connections=1)
        mailbox = replace(imap_server.mailbox(source), port=proxy.port, timeout=1.0)
        result = copy_account(
            mailbox,
            imap_server.mailbox(destination),
            state=MemoryStateStore(),
            connections=1,
        )
    assert (result.outcome, result.copied) == (Outcome.DONE, 30), result.reason
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "INBOX", dst, "INBOX") == 30


def test_a_message_vanishing_mid_run_is_a_warning(imap_server, make_imap_user, monkeypatch):
    from runs.engine import worker

    source, destination = make_imap_user(), make_imap_user()
    uids = _fill_some(imap_server, source, count=5, size=1_000)
    original = worker._Worker._copy

    def expunge_first(self, src, dst, job):
        with imap_server.connect(source) as other:
            other.select_folder("INBOX")
            other.delete_messages([uids[0]])
            other.expunge()
        return original(self, src, dst, job)

    monkeypatch.setattr(worker._Worker, "_copy", expunge_first)
    result = copy_account(
        imap_server.mailbox(source),
        imap_server.mailbox(destination),
        state=MemoryStateStore(),
    )
    assert (result.outcome, result.copied, result.errors) == (Outcome.DONE, 4, 0)
    assert any("vanished" in w for w in result.warnings)


def test_plan_folders_says_which_side_failed(imap_server, make_imap_user):
    from runs.engine import ConnectError

    source, destination = make_imap_user(), make_imap_user()
    bad = replace(imap_server.mailbox(destination), password="wrong-one-77")
    with pytest.raises(ConnectError) as caught:
        plan_folders(imap_server.mailbox(source), bad, None)
    assert caught.value.kind == ErrorKind.AUTH
    assert str(caught.value).startswith("destination: login refused")
    assert "wrong-one-77" not in str(caught.value)


def test_a_small_account_is_copied_on_the_planning_connections_alone(imap_server, make_imap_user):
    """A few messages: one worker on the connections planning opened, and the destination is counted on
    them too: one login per side (each extra one costs more than it saves)."""
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        for name in ("INBOX", "A", "B"):
            fill(client, name, [(make_message(seed=f"{name}{i}"), [], WHEN) for i in range(3)])
    with FaultProxy(imap_server.imap_port) as src_proxy, FaultProxy(imap_server.imap_port) as dst_proxy:
        result = copy_account(
            replace(imap_server.mailbox(source), port=src_proxy.port),
            replace(imap_server.mailbox(destination), port=dst_proxy.port),
            state=MemoryStateStore(),
            connections=2,
        )
        assert (src_proxy.accepted, dst_proxy.accepted) == (1, 1)
    assert (result.outcome, result.copied, result.errors) == (Outcome.DONE, 9, 0), result.reason
    assert [f.destination_messages for f in result.folders if f.source in ("INBOX", "A", "B")] == [3, 3, 3]


@pytest.mark.parametrize("reset", [False, True])
def test_every_connection_dropped_at_once_with_two_workers(imap_server, make_imap_user, monkeypatch, reset):
    from runs.engine import account, planning, worker

    monkeypatch.setattr(worker, "BATCH_MESSAGES", 4)
    monkeypatch.setattr(planning, "UNIT_MIN", 10)
    monkeypatch.setattr(account, "MESSAGES_PER_EXTRA_WORKER", 10)  # two workers for 80 messages
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        for name in ("INBOX", "Work"):
            fill(client, name, [(make_message(seed=f"{name}{i}", attachment_size=3_000), [], WHEN) for i in range(40)])
    with FaultProxy(imap_server.imap_port) as src_proxy, FaultProxy(imap_server.imap_port) as dst_proxy:
        cut = []
        original = worker._Worker._fetch_read
        calls = iter(range(1000))

        def cut_on_the_fourth_batch(self, src, job, uids, tag):
            if next(calls) == 3:  # whichever worker gets there: both workers are mid-copy
                cut.append(src_proxy.cut_all(reset=reset) + dst_proxy.cut_all(reset=reset))
            return original(self, src, job, uids, tag)

        monkeypatch.setattr(worker._Worker, "_fetch_read", cut_on_the_fourth_batch)
        result = copy_account(
            replace(imap_server.mailbox(source), port=src_proxy.port),
            replace(imap_server.mailbox(destination), port=dst_proxy.port),
            state=MemoryStateStore(),
            connections=2,
        )
        assert cut and cut[0] >= 2
        # Both workers had connections when they were cut; at least one pair was opened again (a
        # second worker caught while logging in may hand its work back instead).
        assert src_proxy.accepted + dst_proxy.accepted >= 5, (src_proxy.accepted, dst_proxy.accepted)
    assert (result.outcome, result.copied, result.errors) == (Outcome.DONE, 80, 0), result.reason
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        for name in ("INBOX", "Work"):
            assert assert_same_folder(src, name, dst, name) == 40


def test_a_connection_cut_during_login_is_not_a_wrong_password(imap_server, make_imap_user):
    source, destination = make_imap_user(), make_imap_user()
    _fill_some(imap_server, source, count=3, size=100)
    with FaultProxy(imap_server.imap_port) as proxy:
        # The greeting and CAPABILITY pass; the connection dies while LOGIN is being sent.
        proxy.cut_after(client_bytes=30, connections=2)
        mailbox = replace(imap_server.mailbox(source), port=proxy.port)
        tested = test_connection(mailbox)
        assert (tested.ok, tested.kind) == (False, ErrorKind.PROTOCOL)
        assert "logging in" in tested.message
        result = copy_account(mailbox, imap_server.mailbox(destination), state=MemoryStateStore())
        assert proxy.faults_fired == 2
    assert (result.outcome, result.copied) == (Outcome.DONE, 3), result.reason


def test_a_throttled_append_waits_as_asked_and_is_sent_again(imap_server, make_imap_user, monkeypatch):
    """Office 365 answers "NO Request is throttled. Suggested Backoff Time: N milliseconds"."""
    from runs.engine import append, worker

    source, destination = make_imap_user(), make_imap_user()
    _fill_some(imap_server, source, count=12, size=500)
    original_send, original_collect = append.PendingAppends.send, append.PendingAppends.collect
    throttled = []

    def send(self):
        if not throttled:  # the first message of the first batch is "throttled": never sent
            throttled.append(self.items[0])
            self.held, self.items = self.items, self.items[1:]
        original_send(self)

    def collect(self):
        outcomes = original_collect(self)
        if getattr(self, "held", None) is not None:
            text = "NO Request is throttled. Suggested Backoff Time: 1500 milliseconds"
            outcomes.insert(0, append.AppendOutcome(False, text))
            self.items, self.held = self.held, None
        return outcomes

    pauses = []
    monkeypatch.setattr(append.PendingAppends, "send", send)
    monkeypatch.setattr(append.PendingAppends, "collect", collect)
    monkeypatch.setattr(worker._Worker, "_pause", lambda self, seconds: pauses.append(seconds) or False)
    result = copy_account(
        imap_server.mailbox(source), imap_server.mailbox(destination), state=MemoryStateStore(), connections=1
    )
    assert (result.outcome, result.copied, result.errors) == (Outcome.DONE, 12, 0), result.reason
    assert pauses == [1.5]
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "INBOX", dst, "INBOX") == 12


def test_a_unit_handed_back_after_the_first_worker_ended_is_copied_on_its_connections(
    imap_server, make_imap_user, monkeypatch
):
    """A server granting one connection per user: worker 0 copies on the planning connections (the one
    slot) and ends, leaving them open; worker 1 only then finds it cannot connect and hands its folder back.
    The worker started for that folder must take the planning connections again: a new login is refused
    for as long as they are open (before, the account failed now and then in the suite)."""
    import threading

    from runs.engine import account, work, worker

    monkeypatch.setattr(account, "MESSAGES_PER_EXTRA_WORKER", 10)
    first_ended = threading.Event()
    real_run, real_connect = worker._Worker.run, work._connect_side

    def run(self):
        real_run(self)
        if self.index == 0:
            first_ended.set()

    def connect_side(*args, **kwargs):
        if threading.current_thread().name == "imapcopier-worker-1":
            assert first_ended.wait(30)
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(worker._Worker, "run", run)
    monkeypatch.setattr(work, "_connect_side", connect_side)
    _copy_to_a_server_granting_one_connection(imap_server, make_imap_user, ("INBOX", "A"), 20, connections=2)


def _copy_to_a_server_granting_one_connection(imap_server, make_imap_user, folders, messages, *, connections):
    """Copies `messages` messages in each of `folders` to a destination that refuses a user's second
    connection; asserts the account is done, with a warning and every message copied once."""
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        for name in folders:
            fill(client, name, [(make_message(seed=f"{name}{i}"), [], WHEN) for i in range(messages)])
    with FaultProxy(imap_server.imap_port, max_connections=1) as proxy:
        result = copy_account(
            imap_server.mailbox(source),
            replace(imap_server.mailbox(destination), port=proxy.port),
            state=MemoryStateStore(),
            connections=connections,
        )
        assert proxy.max_concurrent == 1
    assert (result.outcome, result.copied, result.errors) == (Outcome.DONE, messages * len(folders), 0), result.reason
    assert any("fewer connections" in w for w in result.warnings)
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        for name in folders:
            assert assert_same_folder(src, name, dst, name) == messages


def test_throttle_wait_parsing():
    from runs.engine.imap import throttle_wait

    assert throttle_wait("NO Request is throttled. Suggested Backoff Time: 2000 milliseconds") == 2.0
    assert throttle_wait("BAD Request is throttled.") == 1.0
    assert throttle_wait("NO [LIMIT] Mail size is larger than the maximum size") is None


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        ("NO [AUTHENTICATIONFAILED] Authentication failed.", ErrorKind.AUTH),
        ("NO [UNAVAILABLE] Too many simultaneous connections", ErrorKind.PROTOCOL),
        ("NO Request is throttled. Suggested Backoff Time: 2000 milliseconds", ErrorKind.PROTOCOL),
    ],
)
def test_temporary_login_refusals_are_not_wrong_passwords(answer, kind):
    def handler(tag: str, command: str) -> list[str]:
        verb = command.split(" ")[0].upper()
        if verb == "CAPABILITY":
            return ["* CAPABILITY IMAP4rev1", f"{tag} OK done"]
        if verb == "LOGIN":
            return [f"{tag} {answer}"]
        return ["* BYE bye", f"{tag} OK bye"]

    with FakeServer(b"* OK fake ready\r\n", handler) as server:
        result = test_connection(Mailbox("127.0.0.1", server.port, "plain", "someone", "pw-5521"))
    assert (result.ok, result.kind) == (False, kind)
    words = answer.removeprefix("NO ").split("] ")[-1]
    assert words in result.message and "b'" not in result.message and "pw-5521" not in result.message


def test_connections_the_server_refuses_are_done_without(imap_server, make_imap_user, monkeypatch):
    from runs.engine import account

    monkeypatch.setattr(account, "MESSAGES_PER_EXTRA_WORKER", 10)  # three workers wanted for 90 messages
    _copy_to_a_server_granting_one_connection(imap_server, make_imap_user, ("INBOX", "A", "B"), 30, connections=3)
