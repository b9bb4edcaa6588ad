"""Logins with any Unicode user name or password (issue 11 case 1), against a real Dovecot.

Dovecot accepts non-ASCII user names once `auth_username_chars` is empty, through AUTHENTICATE
PLAIN and through LOGIN with literals, so this module runs its own instance configured that way.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import quote

import pytest
from django.core.management import call_command

from runs.engine import ErrorKind, Outcome, copy_account, test_connection
from runs.engine.filestate import MemoryStateStore
from tests.runs.engine.helpers import CommandRecorder, assert_same_folder, hiding_capabilities
from tests.support.dovecot import Dovecot, DovecotError, fill, make_message

pytestmark = pytest.mark.imap

WHEN = dt.datetime(2024, 3, 1, 9, 0, 0, tzinfo=dt.UTC)
USER = "jürgen"
PASSWORD = "pässwörd€"


@pytest.fixture(scope="module")
def unicode_server() -> Iterator[Dovecot]:
    try:
        server = Dovecot(extra_config="auth_username_chars =\n")
    except (DovecotError, OSError) as exc:
        pytest.fail(f"the test Dovecot could not start:\n{exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def jurgen(unicode_server):
    return unicode_server.add_user(USER, PASSWORD)


def test_a_unicode_user_and_password_log_in_with_authenticate_plain(unicode_server, jurgen):
    with CommandRecorder(unicode_server.imap_port) as recorder:
        result = test_connection(replace(unicode_server.mailbox(jurgen), port=recorder.port))
    assert result.ok, result.message
    assert "AUTHENTICATE" in recorder.verbs() and "LOGIN" not in recorder.verbs()
    assert all(PASSWORD.encode() not in line for line in recorder.commands)


@pytest.mark.parametrize(
    "hidden",
    [(b"AUTH=PLAIN",), (b"AUTH=PLAIN", b"LITERAL+")],
    ids=["literal-plus", "synchronising-literals"],
)
def test_without_authenticate_plain_a_unicode_login_is_sent_as_literals(unicode_server, jurgen, hidden):
    with CommandRecorder(unicode_server.imap_port, server_filter=hiding_capabilities(*hidden)) as recorder:
        result = test_connection(replace(unicode_server.mailbox(jurgen), port=recorder.port))
    assert result.ok, result.message
    assert "LOGIN" in recorder.verbs() and "AUTHENTICATE" not in recorder.verbs()
    login = next(line for line in recorder.commands if b" LOGIN " in line)
    if b"LITERAL+" in hidden:
        assert login.endswith(b"}") and not login.endswith(b"+}")  # waits for "+" before each literal
    else:
        assert login.endswith(b"+}")
    assert all(PASSWORD.encode() not in line for line in recorder.commands)


@pytest.mark.parametrize("hidden", [(), (b"AUTH=PLAIN",)], ids=["authenticate-plain", "login-literals"])
def test_a_refused_unicode_login_is_login_refused_with_the_servers_words(unicode_server, jurgen, hidden):
    wrong = "fälsch-€-42"
    with CommandRecorder(unicode_server.imap_port, server_filter=hiding_capabilities(*hidden)) as recorder:
        mailbox = replace(unicode_server.mailbox(jurgen), port=recorder.port, password=wrong)
        result = test_connection(mailbox)
        copied = copy_account(mailbox, unicode_server.mailbox(jurgen), state=MemoryStateStore())
    assert (result.ok, result.kind) == (False, ErrorKind.AUTH)
    assert result.message == "login refused: [AUTHENTICATIONFAILED] Authentication failed."
    assert (copied.outcome, copied.error_kind) == (Outcome.FAILED, ErrorKind.AUTH)
    assert "login refused" in copied.reason and wrong not in copied.reason


def test_a_unicode_account_copies_both_ways(unicode_server, jurgen):
    other = unicode_server.add_user("zoë", "ñandú-☃")
    with unicode_server.connect(jurgen) as client:
        fill(client, "Entwürfe", [(make_message(seed=f"u{i}"), [b"\\Seen"], WHEN) for i in range(4)])
    there = copy_account(unicode_server.mailbox(jurgen), unicode_server.mailbox(other), state=MemoryStateStore())
    assert (there.outcome, there.copied) == (Outcome.DONE, 4), there.reason
    back_to = unicode_server.add_user("ånon", PASSWORD)
    back = copy_account(unicode_server.mailbox(other), unicode_server.mailbox(back_to), state=MemoryStateStore())
    assert (back.outcome, back.copied) == (Outcome.DONE, 4), back.reason
    with unicode_server.connect(jurgen) as src, unicode_server.connect(back_to) as dst:
        assert assert_same_folder(src, "Entwürfe", dst, "Entwürfe") == 4


def test_copymailbox_logs_in_with_a_unicode_user_and_password(unicode_server, jurgen, tmp_path, monkeypatch):
    destination = unicode_server.add_user("maël", "clé-€")
    with unicode_server.connect(jurgen) as client:
        fill(client, "INBOX", [(make_message(seed="cmd"), [], WHEN)])
    monkeypatch.setenv("IMAPCOPIER_SOURCE_PASSWORD", PASSWORD)
    monkeypatch.setenv("IMAPCOPIER_DESTINATION_PASSWORD", destination.password)
    out = io.StringIO()
    call_command(
        "copymailbox",
        "--source", f"imap://{quote(USER)}@127.0.0.1:{unicode_server.imap_port}",
        "--destination", f"imap://{quote(destination.username)}@127.0.0.1:{unicode_server.imap_port}",
        "--state", str(tmp_path / "state.json"), "--no-progress",
        stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    assert out.getvalue().startswith("done: ") and "INBOX → INBOX: 1 copied" in out.getvalue(), out.getvalue()
    assert PASSWORD not in out.getvalue()
    with unicode_server.connect(destination) as client:
        client.select_folder("INBOX", readonly=True)
        assert len(client.search("ALL")) == 1


def _greeting_without_capabilities(data: bytes) -> bytes:
    """A server whose greeting lists no capabilities (RFC 9051 §7.1 makes them optional there)."""
    return re.sub(rb"^\* OK \[CAPABILITY [^\]]*\] ", b"* OK ", data)


@pytest.mark.parametrize("announced", [True, False], ids=["greeting-lists-capabilities", "greeting-lists-none"])
def test_capabilities_are_asked_only_when_the_greeting_did_not_list_them(imap_server, make_imap_user, announced):
    user = make_imap_user()
    hide = None if announced else _greeting_without_capabilities
    with CommandRecorder(imap_server.imap_port, server_filter=hide) as recorder:
        result = test_connection(replace(imap_server.mailbox(user), port=recorder.port))
    assert result.ok, result.message
    verbs = recorder.verbs()
    before_login = verbs[: verbs.index("LOGIN") if "LOGIN" in verbs else verbs.index("AUTHENTICATE")]
    assert ("CAPABILITY" in before_login) is not announced, verbs
