"""A small fault-injecting TCP proxy on 127.0.0.1, put between an IMAP client and the test Dovecot.

    with FaultProxy(server.imap_port) as proxy:
        mailbox = replace(server.mailbox(user), port=proxy.port)
        proxy.cut_after(server_bytes=200_000)      # the next connection dies mid-FETCH
        proxy.cut_after(client_bytes=50_000, connections=2)   # the next two die mid-APPEND
        proxy.stall_after(server_bytes=10_000)     # stops answering (for read timeouts)
        proxy.stall_new()                          # accepts, never sends the greeting
        proxy.bye_at_next_command()                # "* BYE" instead of the next command's answer
        proxy.cut_all()                            # drop every open connection now
        proxy.delay = 0.01                         # seconds added before each forwarded chunk
        proxy.accepted, proxy.current, proxy.max_concurrent, proxy.faults_fired,
        proxy.bytes_from_server, proxy.bytes_from_client, proxy.reset_counters()

Faults are queued: each new connection takes the oldest fault that still has connections left
(`connections=None` = every new connection until clear()). Bytes are counted per connection from its
start, greeting included. A cut closes both sides (FIN, or RST with reset=True). The proxy is
bounded (max_connections) and stops by itself after `lifetime` seconds.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_CHUNK = 64 * 1024


@dataclass
class Fault:
    """What happens to a connection once `after_bytes` bytes went through in `direction`."""

    action: str  # "cut", "stall", "bye"
    direction: str = "server"  # "server": bytes from the server; "client": bytes from the client
    after_bytes: int = 0
    connections: int | None = 1  # new connections still to receive it; None = unlimited
    reset: bool = False  # cut with RST instead of FIN
    bye_text: bytes = b"* BYE Fault injected by the test proxy\r\n"


class _Pipe:
    """One proxied connection, served by its own thread."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, fault: Fault | None, stall: bool) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self.fault = fault
        self.stalled = stall
        self.from_server = 0
        self.from_client = 0
        self.closed = False
        self.lock = threading.Lock()

    # The whole life of one connection.
    def run(self) -> None:
        try:
            if not self.stalled:
                self.upstream = socket.create_connection((self.proxy.target_host, self.proxy.target_port), timeout=10)
                self.upstream.settimeout(None)
            self._loop()
        except (OSError, ValueError):
            # OSError: a side went away. ValueError: the proxy closed this pipe's socket (stop(), a cut
            # from another thread) before the selector saw it: its file descriptor is already -1.
            pass
        finally:
            self.close()
            self.proxy._connection_ended(self)

    def _loop(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.client, selectors.EVENT_READ, "client")
        if self.upstream is not None:
            selector.register(self.upstream, selectors.EVENT_READ, "server")
        try:
            while not self.closed and not self.proxy._stopping.is_set():
                for key, _events in selector.select(timeout=0.2):
                    if self.closed:
                        return
                    side = key.data
                    data = key.fileobj.recv(_CHUNK)  # type: ignore[union-attr]
                    if not data:
                        return  # one side closed: close the other
                    if self.stalled:
                        if side == "server":  # an upstream stalled after some bytes: drop it
                            with contextlib.suppress(KeyError, ValueError):
                                selector.unregister(key.fileobj)
                        continue  # swallow what the client sends; answer nothing
                    if not self._forward(side, data):
                        if self.stalled and self.upstream is not None:
                            with contextlib.suppress(KeyError, ValueError):
                                selector.unregister(self.upstream)
                            self.upstream.close()
                            self.upstream = None
                        if not self.stalled:
                            return
        finally:
            selector.close()

    def _forward(self, side: str, data: bytes) -> bool:
        """Forward `data`; False when a fault fired (the caller stops or stalls)."""
        if self.proxy.delay:
            time.sleep(self.proxy.delay)
        fault = self.fault
        counted = self.from_server if side == "server" else self.from_client
        if fault is not None and fault.direction == side and counted + len(data) > fault.after_bytes:
            allowed = max(0, fault.after_bytes - counted)
            self._fire()
            if fault.action == "bye":  # the command is not forwarded: BYE answers it
                self.client.sendall(fault.bye_text)
                self._cut(reset=False)
                return False
            self._send(side, data[:allowed])
            if fault.action == "cut":
                self._cut(reset=fault.reset)
            else:  # stall: nothing more goes anywhere
                self.stalled = True
            return False
        self._send(side, data)
        return True

    def _send(self, side: str, data: bytes) -> None:
        if not data:
            return
        if side == "server":
            self.from_server += len(data)
            self.proxy._bytes["server"] += len(data)
            self.client.sendall(data)
        else:
            self.from_client += len(data)
            self.proxy._bytes["client"] += len(data)
            assert self.upstream is not None
            self.upstream.sendall(data)

    def _fire(self) -> None:
        with self.proxy._lock:
            self.proxy.faults_fired += 1

    def arm_bye(self, text: bytes) -> None:
        self.fault = Fault("bye", direction="client", after_bytes=self.from_client, bye_text=text)

    def _cut(self, reset: bool) -> None:
        if reset:
            for sock in (self.client, self.upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for sock in (self.client, self.upstream):
            if sock is None:
                continue
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class FaultProxy:
    """Threaded TCP proxy from 127.0.0.1:<port> to target_host:target_port with fault injection."""

    host = "127.0.0.1"

    def __init__(
        self,
        target_port: int,
        target_host: str = "127.0.0.1",
        *,
        lifetime: float = 300.0,
        max_connections: int = 200,
        delay: float = 0.0,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.lifetime = lifetime
        self.max_connections = max_connections
        self.delay = delay
        self.accepted = 0
        self.current = 0
        self.max_concurrent = 0
        self.faults_fired = 0
        self._bytes = {"server": 0, "client": 0}  # forwarded, over every connection so far
        self._faults: list[Fault] = []
        self._stall_new: int | None = 0  # connections still to be stalled at accept; None = all
        self._pipes: set[_Pipe] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((self.host, 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._accept_loop, name=f"faultproxy:{self.port}", daemon=True)
        self._thread.start()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ faults

    def cut_after(
        self,
        *,
        server_bytes: int | None = None,
        client_bytes: int | None = None,
        connections: int | None = 1,
        reset: bool = False,
    ) -> None:
        """Cut the next `connections` new connections after that many bytes from server or client."""
        direction, after = self._mark(server_bytes, client_bytes)
        self._add(Fault("cut", direction, after, connections, reset))

    def stall_after(
        self,
        *,
        server_bytes: int | None = None,
        client_bytes: int | None = None,
        connections: int | None = 1,
    ) -> None:
        """The next `connections` new connections stop forwarding anything after that many bytes."""
        direction, after = self._mark(server_bytes, client_bytes)
        self._add(Fault("stall", direction, after, connections))

    def stall_new(self, connections: int | None = 1) -> None:
        """Accept the next `connections` new connections and never answer (no greeting)."""
        with self._lock:
            self._stall_new = connections

    def bye_at_next_command(
        self,
        *,
        open_connections: bool = True,
        new_connections: int | None = 0,
        text: str = "* BYE Fault injected by the test proxy",
    ) -> None:
        """Answer the next command with an untagged BYE and close, instead of forwarding it: on the
        open connections and/or on the next `new_connections` new ones (their first command)."""
        raw = text.encode() + b"\r\n"
        with self._lock:
            if open_connections:
                for pipe in self._pipes:
                    pipe.arm_bye(raw)
            if new_connections != 0:
                self._faults.append(Fault("bye", "client", 0, new_connections, bye_text=raw))

    def cut_all(self, reset: bool = False) -> int:
        """Drop every open connection now; returns how many were dropped."""
        with self._lock:
            pipes = list(self._pipes)
            self.faults_fired += len(pipes)
        for pipe in pipes:
            pipe._cut(reset)
        return len(pipes)

    def clear(self) -> None:
        """Forget queued faults (faults already attached to open connections stay)."""
        with self._lock:
            self._faults.clear()
            self._stall_new = 0

    @property
    def bytes_from_server(self) -> int:
        """Bytes forwarded from the server to clients, over all connections (open and closed)."""
        return self._bytes["server"]

    @property
    def bytes_from_client(self) -> int:
        """Bytes forwarded from clients to the server, over all connections (open and closed)."""
        return self._bytes["client"]

    def reset_counters(self) -> None:
        with self._lock:
            self._bytes = {"server": 0, "client": 0}
            self.accepted = 0
            self.max_concurrent = self.current
            self.faults_fired = 0

    def wait_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.02)
        return condition()

    @staticmethod
    def _mark(server_bytes: int | None, client_bytes: int | None) -> tuple[str, int]:
        if (server_bytes is None) == (client_bytes is None):
            raise ValueError("give exactly one of server_bytes and client_bytes")
        if server_bytes is not None:
            return "server", server_bytes
        assert client_bytes is not None
        return "client", client_bytes

    def _add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    # --------------------------------------------------------------- machinery

    def _take_fault(self) -> tuple[Fault | None, bool]:
        with self._lock:
            if self._stall_new is None or self._stall_new > 0:
                if self._stall_new is not None:
                    self._stall_new -= 1
                return None, True
            for fault in self._faults:
                if fault.connections is None or fault.connections > 0:
                    if fault.connections is not None:
                        fault.connections -= 1
                    return Fault(
                        fault.action,
                        fault.direction,
                        fault.after_bytes,
                        1,
                        fault.reset,
                        fault.bye_text,
                    ), False
            return None, False

    def _accept_loop(self) -> None:
        try:
            while not self._stopping.is_set():
                if time.monotonic() - self._started_at > self.lifetime:
                    break
                try:
                    client, _address = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    break
                client.settimeout(None)
                with self._lock:
                    if self.current >= self.max_connections:
                        client.close()
                        continue
                fault, stall = self._take_fault()
                pipe = _Pipe(self, client, fault, stall)
                with self._lock:
                    self.accepted += 1
                    self.current += 1
                    self.max_concurrent = max(self.max_concurrent, self.current)
                    self._pipes.add(pipe)
                threading.Thread(target=pipe.run, name=f"faultproxy:{self.port}:pipe", daemon=True).start()
        finally:
            self._shutdown()

    def _connection_ended(self, pipe: _Pipe) -> None:
        with self._lock:
            if pipe in self._pipes:
                self._pipes.discard(pipe)
                self.current -= 1

    def _shutdown(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            pipes = list(self._pipes)
        for pipe in pipes:
            pipe.close()

    def stop(self) -> None:
        """Close the listener and every connection; returns when the accept thread ended."""
        self._stopping.set()
        self._thread.join(timeout=5)
        self._shutdown()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()
