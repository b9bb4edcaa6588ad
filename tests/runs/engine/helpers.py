"""Small helpers for the engine's IMAP tests: a command-recording relay, a scripted fake server,
and comparisons of whole folders between two servers."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Callable

from imapclient import IMAPClient

from tests.support.dovecot import read

_LITERAL = re.compile(rb"\{(\d+)\+?\}$")


def hiding_capabilities(*capabilities: bytes) -> Callable[[bytes], bytes]:
    """A CommandRecorder server filter that removes these capability words from what the server says."""

    def rewrite(data: bytes) -> bytes:
        for word in capabilities:
            data = data.replace(b" " + word, b"")
        return data

    return rewrite


class CommandRecorder:
    """A loopback relay that records every command the client sends (literal contents skipped).

    server_filter, when given, rewrites each chunk the server sends (e.g. to hide a capability);
    it sees chunks as they arrive, so use it only on short lines such as CAPABILITY answers.
    server_cut(chunk) may return the bytes to send instead of that chunk, after which the
    connection is closed (a server dying mid-answer); client_cut(command line) returning True
    closes the connection before that command's chunk reaches the server (a resetting proxy).
    `cuts` counts the connections closed either way.
    """

    def __init__(
        self,
        target_port: int,
        server_filter: Callable[[bytes], bytes] | None = None,
        *,
        server_cut: Callable[[bytes], bytes | None] | None = None,
        client_cut: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.target_port = target_port
        self.server_filter = server_filter
        self.server_cut = server_cut
        self.client_cut = client_cut
        self.cuts = 0
        self.commands: list[bytes] = []
        self.sessions: list[list[bytes]] = []  # the same commands, per connection
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def __enter__(self) -> CommandRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def verbs(self) -> list[str]:
        """The command names: "UID FETCH" and "UID SEARCH" keep their UID prefix."""
        out = []
        for line in self.commands:
            words = line.split(b" ")
            if len(words) < 2:
                continue
            verb = words[1].upper().decode("ascii", "replace")
            if verb == "UID" and len(words) > 2:
                verb += " " + words[2].upper().decode("ascii", "replace")
            out.append(verb)
        return out

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump_server, args=(upstream, client), daemon=True).start()
            session: list[bytes] = []
            with self._lock:
                self.sessions.append(session)
            threading.Thread(target=self._pump_client, args=(client, upstream, session), daemon=True).start()

    def _cut(self, *sockets: socket.socket) -> None:
        with self._lock:
            self.cuts += 1
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _pump_server(self, upstream: socket.socket, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                last = self.server_cut(data) if self.server_cut else None
                if last is not None:
                    client.sendall(last)
                    self._cut(client, upstream)
                    return
                client.sendall(self.server_filter(data) if self.server_filter else data)
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_WR)

    def _pump_client(self, client: socket.socket, upstream: socket.socket, session: list[bytes]) -> None:
        buffer = b""
        skip = 0
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if self.client_cut and any(self.client_cut(line) for line in (buffer + data).split(b"\r\n")):
                    self._cut(client, upstream)
                    return
                upstream.sendall(data)
                buffer += data
                while True:
                    if skip:
                        taken = min(skip, len(buffer))
                        buffer, skip = buffer[taken:], skip - taken
                        if skip:
                            break
                    end = buffer.find(b"\r\n")
                    if end < 0:
                        break
                    line, buffer = buffer[:end], buffer[end + 2 :]
                    match = _LITERAL.search(line)
                    if match:
                        skip = int(match.group(1))
                    with self._lock:
                        self.commands.append(line)
                        session.append(line)
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)


class FakeServer:
    """A scripted IMAP server: `handler(tag, command_line) -> list of response lines`."""

    def __init__(self, greeting: bytes, handler: Callable[[str, str], list[str]]) -> None:
        self.greeting = greeting
        self.handler = handler
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.sendall(self.greeting)
            reader = conn.makefile("rb")
            for raw in reader:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                tag, _, rest = line.partition(" ")
                replies = self.handler(tag, rest)
                conn.sendall("".join(r + "\r\n" for r in replies).encode())
                if rest.upper().startswith("LOGOUT"):
                    return


def assert_same_folder(src: IMAPClient, src_folder: str, dst: IMAPClient, dst_folder: str) -> int:
    """Every message byte-identical (sha256), same flags and INTERNALDATE instant, same order."""
    source = read(src, src_folder)
    destination = read(dst, dst_folder)
    assert len(destination) == len(source), f"{src_folder}: {len(source)} → {len(destination)}"
    assert sorted(m.sha256 for m in destination) == sorted(m.sha256 for m in source)
    by_hash: dict[str, list] = {}
    for m in destination:
        by_hash.setdefault(m.sha256, []).append(m)
    for m in source:
        candidates = by_hash[m.sha256]
        twin = next(
            (c for c in candidates if c.flags == m.flags and c.internaldate == m.internaldate),
            None,
        )
        assert twin is not None, f"{src_folder} UID {m.uid}: flags/date differ ({m.flags}, {m.internaldate})"
        candidates.remove(twin)
    return len(source)


class ResponseRewriter:
    """A loopback relay to a real server that rewrites the server's response lines (never literal
    contents): a server that answers like some product does, everything else real."""

    def __init__(self, target_port: int, rewrite: Callable[[bytes], bytes]) -> None:
        self.target_port = target_port
        self.rewrite = rewrite
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def __enter__(self) -> ResponseRewriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump_server, args=(upstream, client), daemon=True).start()
            threading.Thread(target=self._pump_client, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pump_client(client: socket.socket, upstream: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                upstream.sendall(data)
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    def _pump_server(self, upstream: socket.socket, client: socket.socket) -> None:
        buffer = b""
        skip = 0
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                buffer += data
                out = []
                while buffer:
                    if skip:
                        taken = min(skip, len(buffer))
                        out.append(buffer[:taken])
                        buffer, skip = buffer[taken:], skip - taken
                        continue
                    end = buffer.find(b"\r\n")
                    if end < 0:
                        break
                    line, buffer = buffer[:end], buffer[end + 2 :]
                    match = _LITERAL.search(line)
                    if match:
                        skip = int(match.group(1))
                    out.append(self.rewrite(line) + b"\r\n")
                client.sendall(b"".join(out))
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_WR)


def sizes_short_by(missing: int) -> Callable[[bytes], bytes]:
    """A rewrite reporting every RFC822.SIZE `missing` bytes short, as one server product does."""
    pattern = re.compile(rb"RFC822\.SIZE (\d+)")
    return lambda line: pattern.sub(lambda m: b"RFC822.SIZE %d" % max(0, int(m.group(1)) - missing), line)
