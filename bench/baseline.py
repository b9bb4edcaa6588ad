"""The benchmark's yardstick: a minimal raw-IMAP copier with no state and no checks.

Per source folder: one `UID FETCH 1:* (FLAGS INTERNALDATE BODY.PEEK[])`, and each message is
APPENDed to the destination as soon as it has been read, pipelined with LITERAL+ (no round trip
per message; a second thread reads the destination's answers). One connection per side, plain IMAP.
It does nothing the engine must do (state, de-duplication, flag filtering, retries, size limits),
so it marks how fast the servers can go.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from imapclient.imap_utf7 import decode as utf7_decode
from imapclient.imap_utf7 import encode as utf7_encode

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")


class ImapError(RuntimeError):
    pass


class RawImap:
    """Just enough IMAP: tagged commands, responses with literals, and raw pipelined writes."""

    def __init__(self, host: str, port: int, *, tls: bool = False, timeout: float = 300.0) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.reader = sock.makefile("rb", buffering=1024 * 1024)
        self.counter = 0
        greeting = self.read_response()
        if not greeting[0].startswith(b"* OK"):
            raise ImapError(f"unexpected greeting {greeting[0][:100]!r}")

    def next_tag(self) -> bytes:
        self.counter += 1
        return b"b%d" % self.counter

    def read_response(self) -> list[bytes]:
        """One response line with its literals: [line part, literal, line part, literal, ...]."""
        parts: list[bytes] = []
        while True:
            line = self.reader.readline()
            if not line:
                raise ImapError("connection closed by the server")
            match = _LITERAL.search(line)
            if not match:
                parts.append(line)
                return parts
            parts.append(line)
            parts.append(self.reader.read(int(match.group(1))))

    def command(self, text: bytes) -> list[list[bytes]]:
        tag = self.next_tag()
        self.sock.sendall(tag + b" " + text + b"\r\n")
        untagged: list[list[bytes]] = []
        while True:
            response = self.read_response()
            if response[0].startswith(tag + b" "):
                if not response[0].startswith(tag + b" OK"):
                    raise ImapError(response[0].decode(errors="replace").strip())
                return untagged
            untagged.append(response)

    def login(self, username: str, password: str) -> None:
        self.command(b"LOGIN " + quote(username.encode()) + b" " + quote(password.encode()))

    def close(self) -> None:
        with contextlib.suppress(ImapError, OSError):
            self.command(b"LOGOUT")
        self.sock.close()


def quote(value: bytes) -> bytes:
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def mailbox_arg(name: str) -> bytes:
    return quote(utf7_encode(name))


_LIST = re.compile(rb'^\* LIST \(([^)]*)\) (NIL|"(?:[^"\\]|\\.)*") (.*)\r\n$')


def list_folders(conn: RawImap) -> list[tuple[str, str, bool]]:
    """[(name, delimiter, selectable)] from LIST "" "*"."""
    out = []
    for response in conn.command(b'LIST "" "*"'):
        if len(response) == 3:  # name sent as a literal
            head, literal = response[0], response[1]
            match = _LIST.match(head.replace(_LITERAL.search(head).group(0), b'""\r\n'))  # type: ignore[union-attr]
            raw_name = literal
        else:
            match = _LIST.match(response[0])
            raw_name = b""
        if not match:
            continue
        flags, delimiter, name = match.groups()
        if not raw_name:
            raw_name = name[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\") if name.startswith(b'"') else name
        selectable = b"\\noselect" not in flags.lower() and b"\\nonexistent" not in flags.lower()
        out.append((utf7_decode(raw_name), delimiter.strip(b'"').decode(), selectable))
    return out


_FETCH_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_FETCH_DATE = re.compile(rb'INTERNALDATE "([^"]+)"')


@dataclass
class BaselineResult:
    messages: int = 0
    bytes: int = 0
    folders: int = 0
    seconds: float = 0.0


def copy_account(
    host: str,
    src_port: int,
    src_user: str,
    src_password: str,
    dst_port: int,
    dst_user: str,
    dst_password: str,
) -> BaselineResult:
    """Copy every selectable folder, same names (both sides must share delimiter and prefix)."""
    started = time.perf_counter()
    src = RawImap(host, src_port)
    src.login(src_user, src_password)
    dst = RawImap(host, dst_port)
    dst.login(dst_user, dst_password)
    result = BaselineResult()
    existing = {name for name, _d, _s in list_folders(dst)}
    for name, _delimiter, selectable in list_folders(src):
        if not selectable:
            continue
        if name not in existing:
            dst.command(b"CREATE " + mailbox_arg(name))
        result.folders += 1
        count, size = _copy_folder(src, dst, name)
        result.messages += count
        result.bytes += size
    src.close()
    dst.close()
    result.seconds = time.perf_counter() - started
    return result


def _copy_folder(src: RawImap, dst: RawImap, name: str) -> tuple[int, int]:
    exists = 0
    for response in src.command(b"EXAMINE " + mailbox_arg(name)):
        match = re.match(rb"\* (\d+) EXISTS", response[0])
        if match:
            exists = int(match.group(1))
    if exists == 0:
        return 0, 0
    folder = mailbox_arg(name)
    sentinel = dst.next_tag()  # a NOOP sent after the last APPEND: its answer ends the reader
    errors: list[str] = []

    def read_answers() -> None:
        # Reads the destination's tagged answers while the main thread keeps writing.
        while True:
            line = dst.read_response()[0]
            if line.startswith(sentinel + b" "):
                return
            if line.startswith((b"*", b"+")):
                continue
            if b" OK" not in line[:24]:
                errors.append(line.decode(errors="replace").strip())

    reader = threading.Thread(target=read_answers, daemon=True)
    reader.start()
    tag = src.next_tag()
    src.sock.sendall(tag + b" UID FETCH 1:* (FLAGS INTERNALDATE BODY.PEEK[])\r\n")
    count = size = 0
    while True:
        response = src.read_response()
        if response[0].startswith(tag + b" "):
            if not response[0].startswith(tag + b" OK"):
                raise ImapError(response[0].decode(errors="replace"))
            break
        if b" FETCH " not in response[0][:40] or len(response) < 2:
            continue
        head, body = response[0], response[1]
        flags = _FETCH_FLAGS.search(head)
        date = _FETCH_DATE.search(head)
        flag_text = b" ".join(f for f in (flags.group(1).split() if flags else []) if f.lower() != b"\\recent")
        append_tag = dst.next_tag()
        dst.sock.sendall(
            append_tag
            + b" APPEND "
            + folder
            + b" ("
            + flag_text
            + b")"
            + ((b' "' + date.group(1) + b'"') if date else b"")
            + b" {%d+}\r\n" % len(body)
        )
        dst.sock.sendall(body)
        dst.sock.sendall(b"\r\n")
        count += 1
        size += len(body)
    dst.sock.sendall(sentinel + b" NOOP\r\n")
    reader.join()
    if errors:
        raise ImapError(f"{len(errors)} APPENDs refused in {name}: {errors[0]}")
    return count, size
