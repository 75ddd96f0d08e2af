"""A minimal, fast SMTP sink for benchmarks (aiosmtpd tops out near 800 msg/s here).

    python benchmarks/smtp_sink.py [--port 0] [--delay-ms 0] [--size 0] [--spool DIR]

Prints `PORT <n>` on stdout once listening. Speaks just enough ESMTP for a well-behaved client:
EHLO/HELO (advertising PIPELINING), MAIL, RCPT, DATA (the body is found by scanning the buffer for
CRLF.CRLF), RSET, NOOP, QUIT, answering all pipelined commands of one read in one write,
plus `XCOUNT` (replies `250 <messages accepted so far>`) so a benchmark can check that every
message really arrived. `--delay-ms` delays every reply, as a distant server would (round trips),
which is what makes concurrency matter. Messages are counted and discarded, or with `--spool DIR`
each is first written to its own file in DIR and fsync'ed before the 250 (what a real mail
server does before it takes responsibility for a message; RFC 5321 section 6.1), in a thread
pool so connections wait for the disk in parallel, each in order; the file is then removed (a
relay would deliver it and remove it), so the disk does not fill up.

Use `SinkProcess` from Python: `with SinkProcess(delay_ms=20) as sink: ... sink.port ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import socket
import subprocess
import sys
from pathlib import Path

_END = b"\r\n.\r\n"


class SinkProtocol(asyncio.Protocol):
    """One connection: parse whatever arrived, answer every complete command in one write."""

    count = 0  # messages accepted, all connections
    names = itertools.count()  # spool file names

    def __init__(self, delay: float, size: int, spool: Path | None = None) -> None:
        self.delay = delay
        self.size = size
        self.spool = spool
        self.storing = False  # a message is being written: the rest of the input waits
        self.buf = bytearray()
        self.in_data = False
        self.scan = 0
        self.transport: asyncio.Transport | None = None
        self.queue: asyncio.Queue[tuple[float, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.delay:
            self.queue = asyncio.Queue()
            asyncio.get_running_loop().create_task(self._delayed_writer())
        self._send(b"220 sink ESMTP ready\r\n")

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.storing:
            return
        out: list[bytes] = []
        while True:
            if self.in_data:
                if self.buf.startswith(b".\r\n"):
                    end = -2  # an empty message
                else:
                    end = self.buf.find(_END, self.scan)
                    if end < 0:
                        self.scan = max(0, len(self.buf) - len(_END))
                        break
                message = bytes(self.buf[: max(end, 0)]) if self.spool is not None else b""
                del self.buf[: end + len(_END)]
                self.in_data = False
                if self.spool is not None:
                    self._store(message, out)
                    return
                SinkProtocol.count += 1
                out.append(b"250 2.0.0 OK queued\r\n")
                continue
            eol = self.buf.find(b"\r\n")
            if eol < 0:
                break
            verb = bytes(self.buf[:4]).upper()
            del self.buf[: eol + 2]
            if verb == b"DATA":
                self.in_data, self.scan = True, 0
                out.append(b"354 end with <CRLF>.<CRLF>\r\n")
            elif verb in (b"EHLO", b"HELO"):
                size = f"250-SIZE {self.size}\r\n".encode() if self.size else b""
                out.append(b"250-sink\r\n250-PIPELINING\r\n" + size + b"250 8BITMIME\r\n")
            elif verb == b"QUIT":
                out.append(b"221 bye\r\n")
                self._send(b"".join(out))
                self._close()
                return
            elif verb == b"XCOU":
                out.append(f"250 {SinkProtocol.count}\r\n".encode())
            else:  # MAIL, RCPT, RSET, NOOP
                out.append(b"250 OK\r\n")
        if out:
            self._send(b"".join(out))

    def _store(self, message: bytes, out: list[bytes]) -> None:
        """Write the message to disk (a worker thread) and answer 250 only once it is fsync'ed;
        the replies before it go now, the commands after it wait for it."""
        if out:
            self._send(b"".join(out))
        self.storing = True
        assert self.spool is not None
        path = self.spool / f"{next(SinkProtocol.names)}.eml"
        done = asyncio.get_running_loop().run_in_executor(None, _write_synced, path, message)
        done.add_done_callback(self._stored)

    def _stored(self, done: asyncio.Future[None]) -> None:
        self.storing = False
        if done.exception() is not None:
            self._send(b"451 4.3.0 could not store the message\r\n")
        else:
            SinkProtocol.count += 1
            self._send(b"250 2.0.0 OK stored\r\n")
        if self.transport is not None and not self.transport.is_closing():
            self.data_received(b"")  # the commands that arrived meanwhile

    def _send(self, data: bytes) -> None:
        if self.queue is not None:
            self.queue.put_nowait((asyncio.get_running_loop().time() + self.delay, data))
        elif self.transport is not None:
            self.transport.write(data)

    def _close(self) -> None:
        if self.queue is not None:
            self.queue.put_nowait((0.0, b""))
        elif self.transport is not None:
            self.transport.close()

    async def _delayed_writer(self) -> None:
        """Replies leave `delay` after their command arrived, in order (a distant server)."""
        assert self.queue is not None and self.transport is not None
        loop = asyncio.get_running_loop()
        while True:
            when, data = await self.queue.get()
            if not data:
                self.transport.close()
                return
            await asyncio.sleep(max(0.0, when - loop.time()))
            if self.transport.is_closing():
                return
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.queue is not None:
            self.queue.put_nowait((0.0, b""))


def _write_synced(path: Path, message: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, message)
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink()


async def serve(port: int, delay_ms: float, size: int, spool: Path | None = None) -> None:
    loop = asyncio.get_running_loop()
    if spool is not None:
        spool.mkdir(parents=True, exist_ok=True)
    server = await loop.create_server(
        lambda: SinkProtocol(delay_ms / 1000, size, spool), "127.0.0.1", port, backlog=512
    )
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


class SinkProcess:
    """Run the sink in a subprocess (its own core); `port` once started; stopped on exit."""

    def __init__(self, *, delay_ms: float = 0, size: int = 0, spool: Path | None = None) -> None:
        self.args = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--delay-ms",
            str(delay_ms),
            "--size",
            str(size),
        ]
        if spool is not None:
            self.args += ["--spool", str(spool)]
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> SinkProcess:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().split()
        if first[:1] != ["PORT"]:
            self.proc.kill()
            raise RuntimeError(f"sink did not start: {first}")
        self.port = int(first[1])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    def count(self) -> int:
        """Messages the sink accepted so far (asked over SMTP with XCOUNT)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            f = s.makefile("rb")
            f.readline()
            s.sendall(b"XCOUNT\r\n")
            reply = f.readline().split()
            s.sendall(b"QUIT\r\n")
            return int(reply[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--size", type=int, default=0, help="advertise SIZE (0: none)")
    parser.add_argument(
        "--spool", type=Path, help="write each message to a file here, fsync'ed before the 250"
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.delay_ms, args.size, args.spool))


if __name__ == "__main__":
    main()
