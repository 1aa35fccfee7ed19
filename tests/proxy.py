"""A TCP proxy for fault-injection tests: forwards 127.0.0.1:<free port> to a target server.

It stands between the component and the test server, so that a test can make the network
misbehave while the server itself stays up::

    with FaultProxy(pg.host, pg.port) as proxy:
        config = base_config(pg, connection__port=proxy.port)
        ...
        proxy.cut()        # drop every current connection (as a load balancer might)
        proxy.refuse()     # drop everything and stop listening: "connection refused"
        proxy.blackhole()  # accept, but forward nothing, in either direction
        proxy.stall()      # silence the current connections only; new ones work
        proxy.hold_replies()  # forward what clients send, keep what the server answers
        proxy.restore()    # forward again (re-listening on the same port after refuse())

With ``delay``, every chunk of data is held that long before it is forwarded, in each
direction, as a network's latency would hold it: the benchmark's latency mode
(``benchmarks/latency.py``) runs it so, in a process of its own.

Only threads and sockets; everything is bounded. Sockets have timeouts, every loop waits at
most :data:`POLL` seconds per turn and ends on :meth:`FaultProxy.stop` (or at
``max_lifetime``), threads are daemons and are joined on stop. It listens on, and connects to,
the loopback address only.

In blackhole mode, and on a stalled connection, data is not read: it waits in the kernel's
buffers (as it would in TCP retransmissions during a partition) and flows again after
:meth:`restore`; a client that gives up and closes its end is noticed and its connection
dropped. A connection accepted in blackhole mode is connected to the target only once the
proxy is restored.
"""

from __future__ import annotations

import contextlib
import errno
import select
import selectors
import socket
import threading
import time
from collections import deque
from types import TracebackType

__all__ = ["FaultProxy"]

#: The only address the proxy listens on or connects to.
LOOPBACK = "127.0.0.1"
#: The longest any loop of the proxy waits per turn, in seconds.
POLL = 0.05
#: Socket timeout for connecting to the target and for sending, in seconds.
IO_TIMEOUT = 5.0
#: The longest to wait for a thread to end, in seconds.
JOIN_TIMEOUT = 5.0

_FORWARD = "forward"
_BLACKHOLE = "blackhole"
_REFUSE = "refuse"


def _abort(sock: socket.socket | None) -> None:
    """Reset a connection now: RST rather than FIN, and wake a thread waiting on it."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _no_delay(sock: socket.socket) -> None:
    """Send small writes at once, as libpq does on its own sockets (no Nagle algorithm).

    Otherwise a small write that follows another one not yet acknowledged waits for the
    peer's delayed acknowledgement, up to 40 ms on Linux.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Pair:
    """One client connection and its upstream connection, pumped by one thread."""

    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self.done = threading.Event()
        #: Silenced by FaultProxy.stall(): forwards nothing until restore().
        self.stalled = False
        #: Whether this pair's thread may forward right now, as it last saw (blackhole() and
        #: stall() wait until every pair they silence has seen it).
        self.forwarding = True
        self.thread = threading.Thread(target=self._run, name="fault-proxy-pump", daemon=True)

    def abort(self) -> None:
        _abort(self.client)
        _abort(self.upstream)

    def _run(self) -> None:
        try:
            self._pump()
        except (OSError, ValueError):  # a reset, a timeout, or a socket closed under us
            pass
        finally:
            for sock in (self.client, self.upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()
            self.forwarding = False
            self.done.set()
            self.proxy._forget(self)

    def _pump(self) -> None:
        proxy = self.proxy
        ends = time.monotonic() + proxy.max_lifetime
        # With a delay, data waits here until it is due: (when, where to, what), in arrival
        # order. A select() timeout has µs resolution; epoll's has ms.
        due: deque[tuple[float, socket.socket, bytes]] = deque()
        upstream_read = False  # whether the selector watches the server's side
        selector = selectors.SelectSelector() if proxy.delay else selectors.DefaultSelector()
        with selector:
            selector.register(self.client, selectors.EVENT_READ, "client")
            while not proxy._stopping.is_set() and time.monotonic() < ends:
                self.forwarding = proxy._mode == _FORWARD and not self.stalled
                if not self.forwarding:
                    # Blackhole or stall (refuse() aborts pairs itself): read nothing, answer
                    # nothing, but notice a client that gave up.
                    if self._client_gone():
                        return
                    time.sleep(POLL)
                    continue
                if self.upstream is None:
                    self.upstream = socket.create_connection(
                        (LOOPBACK, proxy.target_port), timeout=IO_TIMEOUT
                    )
                    self.upstream.settimeout(IO_TIMEOUT)
                    _no_delay(self.upstream)
                    selector.register(self.upstream, selectors.EVENT_READ, "upstream")
                    upstream_read = True
                if upstream_read == proxy.replies_held:  # read the server's answers or not
                    upstream_read = not upstream_read
                    if upstream_read:
                        selector.register(self.upstream, selectors.EVENT_READ, "upstream")
                    else:
                        selector.unregister(self.upstream)
                wait = max(0.0, due[0][0] - time.perf_counter()) if due else POLL
                for key, _ in selector.select(wait):
                    if proxy._mode != _FORWARD or self.stalled:
                        break  # silenced meanwhile: forward nothing more
                    source = self.client if key.data == "client" else self.upstream
                    target = self.upstream if key.data == "client" else self.client
                    data = source.recv(65536)
                    if not data:
                        return
                    if proxy.delay:
                        due.append((time.perf_counter() + proxy.delay, target, data))
                    else:
                        target.sendall(data)
                while due and due[0][0] <= time.perf_counter():
                    _, target, data = due.popleft()
                    target.sendall(data)

    def _client_gone(self) -> bool:
        """Whether the client closed its end (without reading what it sent)."""
        try:
            poller = select.poll()
            hangup = getattr(select, "POLLRDHUP", 0)
            if hangup:
                # Linux tells a closed end even when unread data is in front of it.
                poller.register(self.client, hangup)
                return bool(poller.poll(0))
            # Elsewhere: peek, after poll() (a socket with a timeout waits for readability
            # before any recv(), even with MSG_DONTWAIT); unread data hides the close.
            poller.register(self.client, select.POLLIN)
            if not poller.poll(0):
                return False
            return not self.client.recv(1, socket.MSG_PEEK)
        except (OSError, ValueError):
            return True


class FaultProxy:
    """A TCP proxy from ``127.0.0.1:<free port>`` to ``target_host:target_port``.

    :param target_host: the server's address; must be the loopback address (or
        ``localhost``).
    :param target_port: the server's port.
    :param max_connections: client connections beyond this many are closed at once.
    :param max_lifetime: seconds after which any one connection is dropped (a bound, far
        above what a test needs).
    :param delay: seconds each chunk of data is held before it is forwarded, in either
        direction; 0 (the default) forwards at once.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        max_connections: int = 100,
        max_lifetime: float = 300.0,
        delay: float = 0.0,
    ) -> None:
        if target_host not in (LOOPBACK, "localhost"):
            raise ValueError(f"FaultProxy forwards to {LOOPBACK} only, not {target_host!r}")
        self.target_port = int(target_port)
        self.max_connections = max_connections
        self.max_lifetime = max_lifetime
        self.delay = delay
        self._mode = _FORWARD
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._stop_accepting = threading.Event()
        self._port = 0
        #: Client connections accepted since start().
        self.accepted = 0
        #: Whether what the server sends is left unread (:meth:`hold_replies`).
        self.replies_held = False

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address to connect to: always ``127.0.0.1``."""
        return LOOPBACK

    @property
    def port(self) -> int:
        """The port the proxy listens on (the same one across refuse() and restore())."""
        return self._port

    @property
    def connections(self) -> int:
        """The number of live client connections."""
        with self._lock:
            return len(self._pairs)

    @property
    def mode(self) -> str:
        """``"forward"``, ``"blackhole"`` or ``"refuse"``."""
        return self._mode

    def start(self) -> FaultProxy:
        """Start listening on a free port and forwarding."""
        self._stopping.clear()
        self._mode = _FORWARD
        self._listen()
        return self

    def stop(self) -> None:
        """Stop listening, drop every connection, and join every thread."""
        self._stopping.set()
        self._stop_listening()
        self._drop_all()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"<FaultProxy {LOOPBACK}:{self._port} -> {LOOPBACK}:{self.target_port} "
            f"{self._mode}, {self.connections} connections>"
        )

    # -- faults ------------------------------------------------------------------------------

    def cut(self) -> None:
        """Reset every current connection, both ends, now; keep accepting new ones."""
        self._drop_all()

    def refuse(self) -> None:
        """Cut everything and stop listening: new connections get "connection refused"."""
        self._mode = _REFUSE
        self._stop_listening()
        self._drop_all()

    def blackhole(self) -> None:
        """Accept, but never forward nor answer; existing connections stop in both directions.

        Returns once every connection's thread has stopped forwarding.
        """
        self._mode = _BLACKHOLE
        with self._lock:
            pairs = list(self._pairs)
        self._wait_silent(pairs)
        if self._listener is None:
            self._listen()

    def stall(self) -> None:
        """Silence the current connections only, in both directions; new ones work normally.

        What a NAT gateway or firewall that dropped its state for idle flows does: the old
        connections' packets go nowhere, and nothing tells either end. Returns once every
        current connection's thread has stopped forwarding.
        """
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.stalled = True
        self._wait_silent(pairs)

    def hold_replies(self) -> None:
        """Keep forwarding what clients send, but leave what the server answers unread.

        The answers wait in the kernel's buffers until :meth:`release_replies`: a client that
        waits for an answer before it sends more shows it, and one that does not sends on.
        """
        self.replies_held = True

    def release_replies(self) -> None:
        """Forward what the server answers again, what it answered meanwhile first."""
        self.replies_held = False

    def restore(self) -> None:
        """Forward normally again, stalled connections too; after refuse(), listen again on
        the same port.
        """
        if self._listener is None:
            self._listen()
        with self._lock:
            for pair in self._pairs:
                pair.stalled = False
        self._mode = _FORWARD

    # -- internals ---------------------------------------------------------------------------

    def _wait_silent(self, pairs: list[_Pair]) -> None:
        deadline = time.monotonic() + JOIN_TIMEOUT
        while any(pair.forwarding for pair in pairs) and time.monotonic() < deadline:
            time.sleep(POLL / 5)

    def _listen(self) -> None:
        deadline = time.monotonic() + JOIN_TIMEOUT
        while True:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind((LOOPBACK, self._port))
                break
            except OSError as error:
                listener.close()
                # The port is briefly busy: retry, for a bounded time.
                if error.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                    raise
                time.sleep(POLL)
        listener.listen(64)
        listener.settimeout(POLL)
        self._port = listener.getsockname()[1]
        self._listener = listener
        self._stop_accepting.clear()
        self._acceptor = threading.Thread(
            target=self._accept_loop, args=(listener,), name="fault-proxy-accept", daemon=True
        )
        self._acceptor.start()

    def _stop_listening(self) -> None:
        self._stop_accepting.set()
        if self._acceptor is not None:
            self._acceptor.join(JOIN_TIMEOUT)
            self._acceptor = None
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()  # resets connections still in the backlog
            self._listener = None

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stop_accepting.is_set() and not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(IO_TIMEOUT)
            _no_delay(client)
            with self._lock:
                if len(self._pairs) >= self.max_connections:
                    _abort(client)
                    client.close()
                    continue
                pair = _Pair(self, client)
                self._pairs.add(pair)
                self.accepted += 1
                # Started under the lock: a pair that others can see (cut(), refuse()) has a
                # thread they can join.
                pair.thread.start()

    def _forget(self, pair: _Pair) -> None:
        with self._lock:
            self._pairs.discard(pair)

    def _drop_all(self) -> None:
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.abort()
        for pair in pairs:
            pair.thread.join(JOIN_TIMEOUT)
