from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from runs.engine import Security
from runs.engine.filestate import JsonFileStateStore
from runs.management.commands.copymailbox import parse_endpoint
from tests.runs.engine.helpers import assert_same_folder, read
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


def endpoints(imap_server, source, destination, state, *, port=None) -> list[str]:
    """--source, --destination (plain IMAP on loopback, `port` for a proxy in front of the destination) and --state."""
    return [
        "--source", f"imap://{source.username}@127.0.0.1:{imap_server.imap_port}",
        "--destination", f"imap://{destination.username}@127.0.0.1:{port or imap_server.imap_port}",
        "--state", str(state),
    ]  # fmt: skip


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
    assert JsonFileStateStore(state).load()["INBOX"].copied_uids
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
        *endpoints(imap_server, source, destination, tmp_path / "s.json"),
        "--no-progress",
    )
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
        *endpoints(imap_server, source, destination, tmp_path / "s.json"),
    )
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


def test_copymailbox_says_when_the_state_file_cannot_be_read(monkeypatch, tmp_path):
    monkeypatch.setenv("IMAPCOPIER_SOURCE_PASSWORD", "x")
    monkeypatch.setenv("IMAPCOPIER_DESTINATION_PASSWORD", "y")
    (tmp_path / "a-file").write_text("")
    state = tmp_path / "a-file" / "s.json"
    error, _, _ = run(
        "--source", "imap://a@127.0.0.1:1", "--destination", "imap://b@127.0.0.1:1", "--state", str(state),
    )  # fmt: skip
    assert isinstance(error, CommandError)
    assert str(error) == f"cannot read the copy state file {state}: Not a directory"


@pytest.mark.imap
def test_copymailbox_stops_when_the_disk_fills_and_the_next_run_copies_the_rest_once(
    imap_server, make_imap_user, tmp_path, monkeypatch
):
    """The state file's disk fills mid-copy: a clear error, not a traceback; once there is room again
    the next run copies what is left, and nothing twice."""
    import pathlib

    from runs.engine import worker

    monkeypatch.setattr(worker, "BATCH_MESSAGES", 5)
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(make_message(seed=i), [], WHEN) for i in range(30)])
    monkeypatch.setenv("IMAPCOPIER_SOURCE_PASSWORD", source.password)
    monkeypatch.setenv("IMAPCOPIER_DESTINATION_PASSWORD", destination.password)
    state = tmp_path / "state.json"
    args = [
        *endpoints(imap_server, source, destination, state),
        "--no-progress",
    ]
    real_open = pathlib.Path.open
    appends = []

    def open_on_a_filling_disk(path, mode="r", *a, **k):
        if path == state and mode == "a":
            appends.append(mode)
            if len(appends) > 4:
                raise OSError(28, "No space left on device")
        return real_open(path, mode, *a, **k)

    with monkeypatch.context() as patch:
        patch.setattr(pathlib.Path, "open", open_on_a_filling_disk)
        error, out, err = run(*args)
    assert isinstance(error, CommandError)
    assert str(error) == (
        f"cannot write the copy state file {state}: No space left on device; "
        "the copy stopped, and a run once the file can be written goes on"
    )
    with imap_server.connect(destination) as client:
        assert 0 < len(read(client, "INBOX")) < 30
    error, out, _ = run(*args)
    assert error is None, out
    with imap_server.connect(source) as src, imap_server.connect(destination) as dst:
        assert assert_same_folder(src, "INBOX", dst, "INBOX") == 30


@pytest.mark.imap
def test_copymailbox_with_a_state_file_for_another_destination_user_copies_everything(
    imap_server, make_imap_user, tmp_path, monkeypatch
):
    # Issue 11 case 11 through the command: the state file was written for another destination user.
    source, first, second = make_imap_user(), make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(make_message(seed=i), [], WHEN) for i in range(4)])
    state = tmp_path / "state.json"
    monkeypatch.setenv("IMAPCOPIER_SOURCE_PASSWORD", source.password)

    def copy_to(user):
        monkeypatch.setenv("IMAPCOPIER_DESTINATION_PASSWORD", user.password)
        return run(
            *endpoints(imap_server, source, user, state),
            "--no-progress",
        )

    assert copy_to(first)[0] is None
    error, out, _ = copy_to(second)
    assert error is None, out
    assert out.startswith("done: 4 copied, 0 already there, 0 errors")
    assert "source: 4 messages, 4 at the destination" in out
    assert "destination user changed" in out
    with imap_server.connect(source) as src, imap_server.connect(second) as dst:
        assert assert_same_folder(src, "INBOX", dst, "INBOX") == 4


@pytest.mark.imap
def test_copymailbox_says_which_messages_were_not_copied_and_why(imap_server, make_imap_user, tmp_path, monkeypatch):
    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(make_message(seed=i), [], WHEN) for i in range(2)])
        fill(client, "Projects", [(make_message(seed=10 + i), [], WHEN) for i in range(5)])
    monkeypatch.setenv("IMAPCOPIER_SOURCE_PASSWORD", source.password)
    monkeypatch.setenv("IMAPCOPIER_DESTINATION_PASSWORD", destination.password)
    error, out, _ = run(
        *endpoints(imap_server, source, destination, tmp_path / "s.json"),
        "--no-progress",
        "--map",
        "Projects=~Projects",
    )
    assert "source: 7 messages, 2 at the destination, 5 not copied (5 folder not created)" in out
    assert isinstance(error, CommandError) and error.returncode == 1


@pytest.mark.imap
def test_manage_py_copymailbox_runs_without_the_site_and_reports_its_start_up(imap_server, make_imap_user, tmp_path):
    """`manage.py copymailbox` skips django.setup() (imapcopier.boot): no app, no admin imported; the
    summary gives the start-up apart from the copy; a failure still exits 1 with the reason."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    source, destination = make_imap_user(), make_imap_user()
    with imap_server.connect(source) as client:
        fill(client, "INBOX", [(make_message(seed=i), [], WHEN) for i in range(3)])
    repo = Path(__file__).resolve().parents[3]
    env = {
        **os.environ,
        "IMAPCOPIER_SOURCE_PASSWORD": source.password,
        "IMAPCOPIER_DESTINATION_PASSWORD": destination.password,
        "PYTHONPROFILEIMPORTTIME": "1",  # stderr lists every module imported
    }
    args = [
        sys.executable,
        "manage.py",
        "copymailbox",
        *endpoints(imap_server, source, destination, tmp_path / "state.json"),
        "--no-progress",
    ]
    done = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    first = done.stdout.splitlines()[0]
    assert first.startswith("done: 3 copied, 0 already there, 0 errors") and "; start-up " in first
    assert "django.contrib.admin" not in done.stderr and "django.views" not in done.stderr
    env["IMAPCOPIER_SOURCE_PASSWORD"] = "wrong-password-456"
    failed = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1 and failed.stdout.startswith("failed:")
    assert "login refused" in failed.stdout and "wrong-password-456" not in failed.stdout + failed.stderr


@pytest.mark.imap
def test_ctrl_c_stops_copymailbox_after_its_batch_and_the_next_run_copies_the_rest_once(
    imap_server, make_imap_user, tmp_path
):
    """Ctrl-C while the progress bar draws: the handler only raises a flag and write()s its note, so it
    cannot re-enter the bar's own write to stderr; the copy stops after its batch, keeps its state, and
    the next run copies each remaining message exactly once."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from tests.runs.conftest import fill_user, mail_hashes, message_count
    from tests.support.faultproxy import FaultProxy

    source, destination = make_imap_user(), make_imap_user()
    total = fill_user(imap_server, source, {"INBOX": 1200}, size=2000)
    repo = Path(__file__).resolve().parents[3]
    state = tmp_path / "state.json"
    env = {
        **os.environ,
        "IMAPCOPIER_SOURCE_PASSWORD": source.password,
        "IMAPCOPIER_DESTINATION_PASSWORD": destination.password,
    }

    def args(port: int) -> list[str]:
        return [
            sys.executable,
            "manage.py",
            "copymailbox",
            *endpoints(imap_server, source, destination, state, port=port),
        ]

    with FaultProxy(imap_server.imap_port, delay=0.05) as proxy:
        copy = subprocess.Popen(args(proxy.port), cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while message_count(imap_server, destination) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        copy.send_signal(signal.SIGINT)
        out, err = copy.communicate(timeout=120)
    assert copy.returncode == 1, out.decode() + err.decode()[-2000:]
    assert "stopping after the current batch" in err.decode()
    assert "Traceback" not in err.decode()
    first = message_count(imap_server, destination)
    assert 0 < first < total

    done = subprocess.run(args(imap_server.imap_port), cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert done.stdout.startswith(f"done: {total - first} copied")
    assert mail_hashes(imap_server, destination) == mail_hashes(imap_server, source)
