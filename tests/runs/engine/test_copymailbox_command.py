from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from runs.engine import Security
from runs.management.commands.copymailbox import parse_endpoint
from tests.runs.engine.helpers import assert_same_folder
from tests.support.dovecot import fill, make_message

WHEN = dt.datetime(2023, 2, 3, 4, 5, 6, tzinfo=dt.UTC)


def test_parse_endpoint():
    assert parse_endpoint("imaps://alice@mail.example.org", starttls=False) == (
        "mail.example.org", 993, Security.SSL, "alice",
    )  # fmt: skip
    assert parse_endpoint("imap://a%40b.org@127.0.0.1:1143", starttls=True) == (
        "127.0.0.1", 1143, Security.STARTTLS, "a@b.org",
    )  # fmt: skip
    assert parse_endpoint("imap://bob@host", starttls=False)[1:3] == (
        143,
        Security.PLAIN,
    )
    assert parse_endpoint("imap+starttls://bob@host", starttls=False)[2] == Security.STARTTLS


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("imap://bob:secret@host", "passwords are not accepted"),
        ("http://bob@host", "use imaps://"),
        ("imap://host", "user name is missing"),
        ("imap://bob@host:99999", "between 1 and 65535"),
        ("imap://bob@host:abc", "must be a number"),
    ],
)
def test_parse_endpoint_rejects(url, problem):
    with pytest.raises(CommandError, match=problem):
        parse_endpoint(url, starttls=False)


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("copymailbox", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc, out.getvalue(), err.getvalue()
    return None, out.getvalue(), err.getvalue()


@pytest.mark.imap
def test_copymailbox_copies_then_copies_only_what_is_new(imap_server, make_imap_user, tmp_path, monkeypatch):
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        fill(
            client,
            "INBOX",
            [(make_message(seed=i), [b"\\Seen"], WHEN) for i in range(12)],
        )
        fill(
            client,
            "Projects/Ω",
            [(make_message(seed=50 + i), [], WHEN) for i in range(3)],
        )
    monkeypatch.setenv("IMAPCOPIER_SOURCE_PASSWORD", source.password)
    monkeypatch.setenv("IMAPCOPIER_DESTINATION_PASSWORD", destination.password)
    state = tmp_path / "state.json"
    args = [
        "--source", f"imaps://{source.username}@127.0.0.1:{imap_server.imaps_port}",
        "--destination", f"imap://{destination.username}@127.0.0.1:{imap_server.imap_port}",
        "--starttls", "--insecure", "--state", str(state), "--connections", "2",
    ]  # fmt: skip
    error, out, err = run(*args)
    assert error is None, out + err
    assert out.startswith("done: 15 copied, 0 already there, 0 errors")
    assert "Projects/Ω → Projects/Ω: 3 copied" in out
    assert "messages" in err  # the progress bar's last line
    assert source.password not in out + err and destination.password not in out + err
    assert json.loads(state.read_text())["folders"]["INBOX"]["copied_uids"]
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(make_message(seed=99), [], WHEN)])
    error, out, _ = run(*args)
    assert error is None
    assert out.startswith("done: 1 copied, 15 already there, 0 errors")
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "INBOX", dst, "INBOX") == 13


@pytest.mark.imap
def test_copymailbox_fails_with_a_non_zero_status(imap_server, make_imap_user, tmp_path, monkeypatch):
    source, destination = make_imap_user(), make_imap_user()
    monkeypatch.setenv("IMAPCOPIER_SOURCE_PASSWORD", "wrong-password-123")
    monkeypatch.setenv("IMAPCOPIER_DESTINATION_PASSWORD", destination.password)
    error, out, err = run(
        "--source", f"imap://{source.username}@127.0.0.1:{imap_server.imap_port}",
        "--destination", f"imap://{destination.username}@127.0.0.1:{imap_server.imap_port}",
        "--state", str(tmp_path / "s.json"), "--no-progress",
    )  # fmt: skip
    assert isinstance(error, CommandError) and error.returncode == 1
    assert out.startswith("failed:")
    assert "login refused" in out
    assert "wrong-password-123" not in out + err + str(error)


@pytest.mark.imap
def test_copymailbox_reports_refused_messages_and_exits_non_zero(imap_server, make_imap_user, tmp_path, monkeypatch):
    source = make_imap_user()
    destination = make_imap_user(max_message_bytes=30_000, advertise_appendlimit=False)
    with imap_server.connect(source) as client:
        fill(
            client,
            "INBOX",
            [(make_message(seed=1, subject="huge", attachment_size=60_000), [], WHEN)],
        )
        fill(client, "INBOX", [(make_message(seed=2), [], WHEN)])
    monkeypatch.setenv("IMAPCOPIER_SOURCE_PASSWORD", source.password)
    monkeypatch.setenv("IMAPCOPIER_DESTINATION_PASSWORD", destination.password)
    error, out, _ = run(
        "--source", f"imap://{source.username}@127.0.0.1:{imap_server.imap_port}",
        "--destination", f"imap://{destination.username}@127.0.0.1:{imap_server.imap_port}",
        "--state", str(tmp_path / "s.json"),
    )  # fmt: skip
    assert isinstance(error, CommandError) and error.returncode == 1
    assert "done: 1 copied" in out
    assert "error: INBOX UID 1" in out and "'huge'" in out and "NO [LIMIT]" in out


def test_copymailbox_without_password_and_terminal_says_what_to_set(monkeypatch, tmp_path):
    monkeypatch.delenv("IMAPCOPIER_SOURCE_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    error, _, _ = run(
        "--source", "imap://a@127.0.0.1:1", "--destination", "imap://b@127.0.0.1:1", "--state", str(tmp_path / "s"),
    )  # fmt: skip
    assert isinstance(error, CommandError)
    assert "IMAPCOPIER_SOURCE_PASSWORD" in str(error)


def test_copymailbox_refuses_a_malformed_state_file(monkeypatch, tmp_path):
    monkeypatch.setenv("IMAPCOPIER_SOURCE_PASSWORD", "x")
    monkeypatch.setenv("IMAPCOPIER_DESTINATION_PASSWORD", "y")
    state = tmp_path / "s.json"
    state.write_text("garbage")
    error, _, _ = run(
        "--source",
        "imap://a@127.0.0.1:1",
        "--destination",
        "imap://b@127.0.0.1:1",
        "--state",
        str(state),
    )
    assert isinstance(error, CommandError) and "not a copy state file" in str(error)
    assert state.read_text() == "garbage"
