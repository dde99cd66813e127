"""Syslog server: UDP and TCP (RFC 6587) on one port number, batched into the telemetry store.

Syslog senders never retry and cannot be told to slow down, so whatever arrives is taken
at once and kept in memory until the database has it. Writes run in one dedicated thread
(the ORM is synchronous) so that a slow or absent database never stalls the sockets and
the listener holds at most one database connection. While the database is down batches
wait and are retried with backoff; past ``max_buffered`` messages the oldest are dropped,
counted and logged, never silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from django.db import InterfaceError, OperationalError, close_old_connections, connections
from prometheus_client import Counter

from ingest.syslog import SyslogStreamFramer, parse_syslog
from ingest.types import DecodeError, LogBatch, LogEntry, Rejection
from webapp.telemetry import writer

log = logging.getLogger(__name__)

# A listener exists to receive from other hosts, so it binds every interface by default.
DEFAULT_HOST = "0.0.0.0"  # noqa: S104
DEFAULT_PORT = 5514
FLUSH_INTERVAL_S = 1.0
FLUSH_MESSAGES = 1000
MAX_BUFFERED_MESSAGES = 100_000
IDLE_TIMEOUT_S = 300.0
MAX_FRAME_BYTES = 64 * 1024
MAX_CONNECTIONS = 1024
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 30.0
# Within the 10 s that docker compose and Kubernetes give between SIGTERM and SIGKILL, with
# time left to log what could not be stored.
SHUTDOWN_TIMEOUT_S = 5.0
_READ_CHUNK = 64 * 1024
# Bursts arrive faster than one loop iteration handles them; a larger kernel buffer keeps
# UDP datagrams from being dropped before we ever see them (the kernel caps it anyway).
_UDP_RCVBUF = 4 * 1024 * 1024
_WARN_EVERY_S = 10.0
_TRANSIENT = (OperationalError, InterfaceError)

RECEIVED = Counter("telltale_syslog_received_total", "Syslog messages received", ["transport"])
DROPPED = Counter(
    "telltale_syslog_dropped_total", "Syslog messages received but never stored", ["reason"]
)
PARSE_FALLBACKS = Counter(
    "telltale_syslog_parse_fallbacks_total",
    "Syslog messages stored as raw text because no header grammar fitted",
)
WRITE_FAILURES = Counter(
    "telltale_syslog_write_failures_total", "Syslog batch writes that failed and were retried"
)
TRUNCATED = Counter(
    "telltale_syslog_truncated_frames_total", "TCP syslog frames cut to the maximum frame size"
)


@dataclass(slots=True)
class ListenerStats:
    """Counts since start; received == written + dropped + empty + buffered at rest."""

    received: int = 0
    written: int = 0  # accepted by the store (a retried batch that had committed counts once)
    dropped: int = 0
    parse_fallbacks: int = 0
    empty: int = 0  # nothing but whitespace: refused, reported to the writer as rejected
    truncated_frames: int = 0
    write_failures: int = 0
    buffered: int = 0
    connections: int = 0


@dataclass(slots=True)
class _Batch:
    client: str
    entries: list[LogEntry] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    # Syslog has no retries of its own, so a random digest per batch is enough; it is kept
    # across our own retries so that a write which committed but reported an error is not
    # stored twice.
    digest: bytes = field(default_factory=lambda: os.urandom(16))
    part: bool = False  # a half of a batch the store refused


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, listener: SyslogListener):
        self._listener = listener

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self._listener._accept(data, str(addr[0]), "udp")

    def error_received(self, exc: Exception) -> None:
        log.warning("syslog UDP socket error: %s", exc)


class SyslogListener:
    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        udp: bool = True,
        tcp: bool = True,
        name: str | None = None,
        flush_interval: float = FLUSH_INTERVAL_S,
        flush_messages: int = FLUSH_MESSAGES,
        max_buffered: int = MAX_BUFFERED_MESSAGES,
        idle_timeout: float = IDLE_TIMEOUT_S,
        max_frame: int = MAX_FRAME_BYTES,
        max_connections: int = MAX_CONNECTIONS,
        retry_initial: float = RETRY_INITIAL_S,
        retry_max: float = RETRY_MAX_S,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT_S,
    ):
        if not (udp or tcp):
            raise ValueError("enable at least one of UDP and TCP")
        if flush_messages < 1 or max_buffered < 1:
            raise ValueError("flush_messages and max_buffered must be positive")
        self.host, self.port, self.udp, self.tcp, self.name = host, port, udp, tcp, name
        self.flush_interval, self.flush_messages = flush_interval, flush_messages
        self.max_buffered, self.max_frame = max_buffered, max_frame
        self.idle_timeout, self.max_connections = idle_timeout, max_connections
        self.retry_initial, self.retry_max = retry_initial, retry_max
        self.shutdown_timeout = shutdown_timeout
        self.bound_port: int | None = None
        self._stats = ListenerStats()
        self._open: dict[str, _Batch] = {}  # per client, filling up
        self._open_count = 0
        self._queue: deque[_Batch] = deque()  # sealed, oldest first
        self._in_flight = 0  # messages of the batch being written
        self._tcp_server: asyncio.Server | None = None
        self._udp_transport: asyncio.DatagramTransport | None = None
        self._connections: set[asyncio.Task] = set()
        self._writer_task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._stopping_event: asyncio.Event | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._stopping = False
        self._last_drop_warning = 0.0
        self._drops_unreported = 0

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the sockets (raises OSError if the port is taken) and start writing."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopping_event = asyncio.Event()
        # Port 0 must give both protocols the same number: the one TCP got may be taken for
        # UDP, so try a few.
        attempts = 20 if self.port == 0 and self.udp and self.tcp else 1
        for attempt in range(attempts):
            try:
                await self._bind(self.port)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                    raise
        # One thread, so that Django opens one connection and it is always the same one.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="syslog-writer")
        self._writer_task = asyncio.create_task(self._writer_loop(), name="syslog-writer")
        log.info("syslog listener on %s", ", ".join(self.addresses()))

    async def _bind(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        server = None
        if self.tcp:
            server = await asyncio.start_server(
                self._handle_tcp, self.host, port, reuse_address=True
            )
            port = server.sockets[0].getsockname()[1]
        if self.udp:
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self), local_addr=(self.host, port)
                )
            except OSError:
                if server is not None:
                    server.close()
                    await server.wait_closed()
                raise
            sock = transport.get_extra_info("socket")
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_RCVBUF)
            except OSError:
                log.debug("could not enlarge the UDP receive buffer", exc_info=True)
            port = transport.get_extra_info("sockname")[1]
            self._udp_transport = transport
        self._tcp_server = server
        self.bound_port = port

    def addresses(self) -> list[str]:
        protocols = [p for p, on in (("udp", self.udp), ("tcp", self.tcp)) if on]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return [f"{p}://{host}:{self.bound_port}" for p in protocols]

    async def stop(self) -> None:
        """Stop receiving, store what is pending (waiting at most ``shutdown_timeout`` for
        the database) and release the sockets and the database connection."""
        if self._stopping:
            return
        self._stopping = True
        if self._stopping_event is not None:
            self._stopping_event.set()
        if self._tcp_server is not None:
            self._tcp_server.close()
        if self._udp_transport is not None:
            self._udp_transport.close()
        # Cancelled connections hand their partly received last frame over as they close.
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._tcp_server is not None:
            await self._tcp_server.wait_closed()
        if self._writer_task is None:
            return
        self._seal()
        self._wake_writer()
        done, _ = await asyncio.wait({self._writer_task}, timeout=self.shutdown_timeout)
        if not done:
            self._writer_task.cancel()
            await asyncio.gather(self._writer_task, return_exceptions=True)
        lost = self._stats.buffered
        if lost:
            self._count_drop(lost, "shutdown")
            log.error("syslog listener stopped with %d messages not confirmed stored", lost)
        if self._executor is not None:
            closing = asyncio.get_running_loop().run_in_executor(
                self._executor, connections.close_all
            )
            if done:
                await closing
            # Otherwise a write is stuck in the thread; it closes the connection after it.
            self._executor.shutdown(wait=False)
        log.info("syslog listener stopped: %s", self.stats())

    def serve_forever(self, ready: Callable[[SyslogListener], None] | None = None) -> None:
        """Run until SIGTERM/SIGINT (or ``request_stop``), then flush and return.

        ``ready`` is called once the sockets are bound, e.g. to print the address."""
        asyncio.run(self._serve(ready))

    def request_stop(self) -> None:
        """Ask ``serve_forever`` to finish; safe to call from any thread."""
        loop, event = self._loop, self._stop_requested
        if loop is not None and event is not None:
            loop.call_soon_threadsafe(event.set)

    async def _serve(self, ready: Callable[[SyslogListener], None] | None) -> None:
        self._stop_requested = asyncio.Event()
        await self.start()
        loop = asyncio.get_running_loop()
        handled = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._stop_requested.set)
                handled.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread (tests): request_stop is the way out
        try:
            if ready is not None:
                ready(self)
            await self._stop_requested.wait()
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
            await self.stop()

    def stats(self) -> ListenerStats:
        return replace(self._stats)

    # --- intake --------------------------------------------------------------------------
    async def _handle_tcp(self, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        peer = str((w.get_extra_info("peername") or ("unknown",))[0])
        if self._stopping or len(self._connections) >= self.max_connections:
            log.warning("refusing syslog TCP connection from %s: too many connections", peer)
            w.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self._stats.connections += 1
        framer = SyslogStreamFramer(self.max_frame)
        try:
            while True:
                try:
                    async with asyncio.timeout(self.idle_timeout):
                        data = await reader.read(_READ_CHUNK)
                except TimeoutError:
                    # Some senders keep a connection open forever and send nothing; closing
                    # it frees the slot and they reconnect when they have something to say.
                    log.info("closing syslog TCP connection from %s: idle", peer)
                    break
                if not data:
                    break
                for frame in framer.feed(data):
                    self._accept(frame, peer, "tcp")
                self._note_truncation(framer, peer)
        except OSError as exc:
            log.info("syslog TCP connection from %s failed: %s", peer, exc)
        finally:
            for frame in framer.flush():
                self._accept(frame, peer, "tcp")
            self._note_truncation(framer, peer)
            w.close()
            self._connections.discard(task)
            self._stats.connections -= 1

    def _note_truncation(self, framer: SyslogStreamFramer, peer: str) -> None:
        cut = framer.truncated_frames
        if cut:
            framer.truncated_frames = 0
            self._stats.truncated_frames += cut
            TRUNCATED.inc(cut)
            log.warning("syslog frame from %s over %d bytes: cut", peer, self.max_frame)

    def _accept(self, frame: bytes, peer: str, transport: str) -> None:
        self._stats.received += 1
        RECEIVED.labels(transport).inc()
        client = self.name or peer
        batch = self._open.get(client)
        if batch is None:
            batch = self._open[client] = _Batch(client)
        try:
            entry = parse_syslog(frame, received_ns=time.time_ns(), peer=peer)
        except DecodeError as exc:
            self._stats.empty += 1
            if batch.rejected:
                batch.rejected[0].count += 1
            else:
                batch.rejected.append(Rejection(field="message", reason=str(exc)))
            return
        except Exception:
            # The parser promises never to fail on content; if it does, the line is still
            # worth more stored raw than lost.
            log.warning("syslog parser failed; storing the message raw", exc_info=True)
            entry = LogEntry(
                ts_ns=time.time_ns(),
                message=frame.decode("utf-8", errors="replace"),
                node=peer,
                attributes={"syslog.peer": peer, "syslog.parse_error": "true"},
                source="syslog",
            )
        if "syslog.pri_missing" in entry.attributes or "syslog.parse_error" in entry.attributes:
            self._stats.parse_fallbacks += 1
            PARSE_FALLBACKS.inc()
        _strip_nul(entry)
        batch.entries.append(entry)
        self._open_count += 1
        self._stats.buffered += 1
        if self._open_count >= self.flush_messages:
            self._seal()
            self._wake_writer()
        if self._stats.buffered > self.max_buffered:
            self._drop_oldest()

    def _seal(self) -> None:
        self._queue.extend(self._open.values())
        self._open.clear()
        self._open_count = 0

    def _wake_writer(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _drop_oldest(self) -> None:
        # The batch being written cannot be trimmed under the writer's feet, and dropping
        # newer messages in its place would break oldest-first: let it overshoot the limit
        # until its write fails and it is back at the queue front.
        excess = self._stats.buffered - self._in_flight - self.max_buffered
        dropped = 0
        for batches, sealed in ((self._queue, True), (self._open.values(), False)):
            for batch in batches:
                if excess <= 0:
                    break
                n = min(excess, len(batch.entries))
                if not n:
                    continue
                del batch.entries[:n]
                if sealed:
                    # Fingerprints are (digest, position): a shortened batch is a new batch.
                    batch.digest = os.urandom(16)
                excess -= n
                dropped += n
        self._open_count = sum(len(b.entries) for b in self._open.values())
        self._queue = deque(b for b in self._queue if b.entries or b.rejected)
        if dropped:
            self._stats.buffered -= dropped
            self._count_drop(dropped, "overflow")
            self._drops_unreported += dropped
            now = time.monotonic()
            if now - self._last_drop_warning >= _WARN_EVERY_S:
                msg = "syslog buffer full (database behind or down): dropped %d oldest, %d in all"
                log.warning(msg, self._drops_unreported, self._stats.dropped)
                self._last_drop_warning, self._drops_unreported = now, 0

    def _count_drop(self, n: int, reason: str) -> None:
        self._stats.dropped += n
        DROPPED.labels(reason).inc(n)

    # --- writing -------------------------------------------------------------------------
    async def _writer_loop(self) -> None:
        assert self._wake is not None and self._loop is not None
        delay = self.retry_initial
        failures = 0
        while True:
            if not self._queue:
                if not self._stopping:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.flush_interval):
                            await self._wake.wait()
                self._wake.clear()
                self._seal()
                if not self._queue:
                    if self._stopping:
                        return
                    continue
            batch = self._queue.popleft()
            self._in_flight = len(batch.entries)
            try:
                result = await self._loop.run_in_executor(self._executor, _write, batch)
            except _TRANSIENT as exc:
                self._in_flight = 0
                failures += 1
                self._stats.write_failures += 1
                WRITE_FAILURES.inc()
                self._queue.appendleft(batch)
                if self._stats.buffered > self.max_buffered:
                    self._drop_oldest()
                log.warning(
                    "syslog write failed (%s); %d messages buffered, retrying in %.1fs",
                    exc,
                    self._stats.buffered,
                    delay,
                )
                await self._retry_pause(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            except Exception:
                self._in_flight = 0
                self._write_failed_for_good(batch)
                continue
            self._in_flight = 0
            if failures:
                log.warning("syslog writes resumed after %d failed attempts", failures)
            failures, delay = 0, self.retry_initial
            self._stats.written += result.accepted
            self._stats.buffered -= len(batch.entries)

    async def _retry_pause(self, delay: float) -> None:
        if self._stopping:
            # The shutdown window is short: keep trying at the first step's pace.
            await asyncio.sleep(self.retry_initial)
            return
        assert self._stopping_event is not None
        # A stop cuts a long backoff short so that the last attempts fit its time limit.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stopping_event.wait()

    def _write_failed_for_good(self, batch: _Batch) -> None:
        """A write refused for a reason retrying will not fix (bad data, a bug): split the
        batch so that one poisonous message costs only itself."""
        self._stats.write_failures += 1
        WRITE_FAILURES.inc()
        if len(batch.entries) > 1:
            # Only the first refusal gets a traceback: a systematic error would otherwise
            # log one per half.
            log.warning(
                "syslog batch of %d refused; retrying in halves",
                len(batch.entries),
                exc_info=not batch.part,
            )
            half = len(batch.entries) // 2
            # The refused write rolled back, so the halves may take fresh digests.
            self._queue.appendleft(_Batch(batch.client, batch.entries[half:], part=True))
            self._queue.appendleft(
                _Batch(batch.client, batch.entries[:half], batch.rejected, part=True)
            )
            return
        log.exception(
            "syslog message from %s could not be stored and is dropped: %.200r",
            batch.client,
            batch.entries[0].message if batch.entries else "",
        )
        self._stats.buffered -= len(batch.entries)
        self._count_drop(len(batch.entries), "unwritable")


def _write(batch: _Batch) -> writer.WriteResult:
    # Connections broken by a database restart are noticed and replaced here rather than
    # failing the next batch too.
    close_old_connections()
    try:
        return writer.write_logs(
            LogBatch(entries=batch.entries, rejected=batch.rejected),
            source="syslog",
            client=batch.client,
            batch_digest=batch.digest,
        )
    finally:
        close_old_connections()


def _strip_nul(entry: LogEntry) -> None:
    """PostgreSQL text and jsonb cannot hold NUL; a UDP datagram or an octet-counted frame
    can. Replace it so that the line is stored instead of failing its whole batch."""
    entry.message = entry.message.replace("\x00", "\ufffd")
    if entry.node:
        entry.node = entry.node.replace("\x00", "\ufffd")
    if any("\x00" in k + v for k, v in entry.attributes.items()):
        entry.attributes = {
            k.replace("\x00", "\ufffd"): v.replace("\x00", "\ufffd")
            for k, v in entry.attributes.items()
        }
