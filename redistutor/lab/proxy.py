"""A loopback TCP proxy that adds latency to a node's connections, or cuts them (a partition).

Why a proxy and not ``tc netem``: it needs no root, touches no other traffic on the machine, and
stops with the notebook. Clients (or a replica's link to its primary) connect to the proxy's port
instead of the node's; every chunk of bytes is held ``delay_ms`` before it is passed on, in each
direction, so a request/reply round trip gains ``2 * delay_ms``. Order is preserved.

``partition()`` turns the proxy into a black hole: bytes in flight and bytes sent afterwards are
dropped, and closes are not passed on either (in a real partition the FIN does not arrive).
``heal()`` resets the connections that lived through the partition (their byte streams have
holes), so both ends reconnect cleanly::

    t=0.00  replica  <-link->  proxy  <-link->  primary
    t=0.10  proxy.partition()        bytes from the primary are now dropped
    t=0.20  client SET k v -> OK     acknowledged by the primary only
    t=0.30  primary killed (-9)      the proxy does not tell the replica
    t=0.40  REPLICAOF NO ONE         the replica becomes primary without k

It runs an asyncio loop in one daemon thread of this process, so it dies with the kernel.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from ..events import EventLog
from ._base import LabObject


class _Conn:
    """One proxied connection: the client side and the upstream side."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch  # partition epoch it was opened in (heal() resets older ones)
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task] = []
        self.broken = False  # lived through a partition: reset on heal

    def abort(self) -> None:
        for w in self.writers:
            try:
                w.transport.abort()
            except Exception:
                pass
        for t in self.tasks:
            t.cancel()


class LatencyProxy(LabObject):
    """Forward ``127.0.0.1:port`` to a node, ``delay_ms`` late each way; partition on demand.

    Args:
        target_port: the node's port (on 127.0.0.1).
        delay_ms: added one-way delay in milliseconds (change it any time with :meth:`set_delay`).
        name: the actor named in fault events ("n1 link", ...).
        log: the lab's :class:`~redistutor.events.EventLog` (faults are recorded there).
    """

    host = "127.0.0.1"

    def __init__(self, target_port: int, *, delay_ms: float = 0.0, name: str = "proxy",
                 log: EventLog | None = None, target_host: str = "127.0.0.1") -> None:
        super().__init__(log)
        self.name = name
        self.target_host = target_host
        self.target_port = target_port
        self._delay = max(0.0, delay_ms) / 1000.0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[_Conn] = set()
        self._partitioned = False
        self._epoch = 0
        self.forwarded_bytes = 0

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> LatencyProxy:
        if self.running:
            return self
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                # Loopback only: the proxy must never expose a node to the network.
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._handle, self.host, self.port or 0))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # reported to start()
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"latency-proxy-{self.name}", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread = None
            raise failure[0]
        self._registered()
        return self

    def stop(self) -> None:
        """Close the listening socket and every proxied connection. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=5)
            except Exception:
                pass
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
        self._thread = None
        self._loop = None
        self._unregistered()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.abort()
        self._conns.clear()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 1)
            except Exception:
                pass

    # -- faults -------------------------------------------------------------------------------
    @property
    def delay_ms(self) -> float:
        return self._delay * 1000.0

    def set_delay(self, delay_ms: float) -> None:
        """Change the added one-way delay (applies to bytes read from now on)."""
        self._delay = max(0.0, delay_ms) / 1000.0
        self.log.record(self.name, "fault", f"latency +{delay_ms:g} ms each way")

    def partition(self) -> None:
        """Drop every byte (and close) in both directions until :meth:`heal`."""
        self._call(self._do_partition)
        self.log.record(self.name, "fault", "partition (bytes dropped)")

    def heal(self) -> None:
        """Forward again; connections that lived through the partition are reset."""
        self._call(self._do_heal)
        self.log.record(self.name, "fault", "heal (connections reset)")

    @property
    def partitioned(self) -> bool:
        return self._partitioned

    def _do_partition(self) -> None:
        self._partitioned = True
        for conn in self._conns:
            conn.broken = True

    def _do_heal(self) -> None:
        self._partitioned = False
        self._epoch += 1
        for conn in [c for c in self._conns if c.broken]:
            conn.abort()
            self._conns.discard(conn)

    def _call(self, fn: Any) -> None:
        """Run ``fn`` on the proxy's loop and wait, so the state change is ordered with I/O."""
        if self._loop is None or not self.running:
            fn()
            return
        done = threading.Event()

        def wrapped() -> None:
            try:
                fn()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(wrapped)
        done.wait(5)

    # -- forwarding ---------------------------------------------------------------------------
    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        conn = _Conn(self._epoch)
        conn.writers.append(cwriter)
        if self._partitioned:
            conn.broken = True
        try:
            ureader, uwriter = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            # The node is down: refuse like the node itself would (unless partitioned: silence).
            if not self._partitioned:
                cwriter.transport.abort()
                return
            self._conns.add(conn)
            conn.tasks.append(asyncio.current_task())  # type: ignore[arg-type]
            try:
                while await creader.read(65536):
                    pass
            finally:
                self._conns.discard(conn)
            return
        conn.writers.append(uwriter)
        self._conns.add(conn)
        up = asyncio.ensure_future(self._pump(creader, uwriter, conn))
        down = asyncio.ensure_future(self._pump(ureader, cwriter, conn))
        conn.tasks += [up, down]
        try:
            await asyncio.gather(up, down, return_exceptions=True)
        finally:
            self._conns.discard(conn)
            conn.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Conn) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if self._partitioned or conn.broken:
                    continue  # in flight when the partition began: lost
                if data is None:
                    try:
                        writer.write_eof()
                    except (OSError, RuntimeError):
                        writer.transport.abort()
                    return
                writer.write(data)
                self.forwarded_bytes += len(data)
                try:
                    await writer.drain()
                except (ConnectionError, OSError):
                    conn.abort()
                    return

        sender = asyncio.ensure_future(deliver())
        conn.tasks.append(sender)
        try:
            while True:
                try:
                    data = await reader.read(65536)
                except (ConnectionError, OSError):
                    data = b""
                if not data:
                    break
                if self._partitioned or conn.broken:
                    continue
                queue.put_nowait((loop.time() + self._delay, data))
            if self._partitioned or conn.broken:
                # A close during a partition is not seen by the other side: stay silent.
                await asyncio.Event().wait()
            queue.put_nowait((loop.time() + self._delay, None))
            await sender
        finally:
            sender.cancel()

    def client(self, password: str | None = None, **kwargs: Any):
        """A fail-fast ``redis.Redis`` that talks to the node through this proxy."""
        import redis

        from ..server import fail_fast_options

        kwargs.setdefault("socket_timeout", 1.0 + 2 * self.delay_ms / 1000.0)  # the delay is not a fault
        return redis.Redis(host=self.host, port=self.port, password=password, **fail_fast_options(**kwargs))

    def __repr__(self) -> str:
        state = "partitioned" if self._partitioned else ("running" if self.running else "stopped")
        return f"LatencyProxy({self.name!r}, {state}, delay={self.delay_ms:g} ms)"
