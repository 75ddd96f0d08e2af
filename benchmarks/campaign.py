"""Benchmark: a whole campaign (ledger, store, workers) vs raw sending, on SQLite and PostgreSQL.

    python benchmarks/campaign.py [--n 100000] [--raw-n 20000] [--concurrency 4]
                                  [--database postgresql://... | --no-postgresql]
                                  [--skip-fsync] [--delayed-n 1600] [--skip-delayed]

In one run, with the same ~50 KB issue as benchmarks/send.py, against two sinks in turn: the
minimal loopback SMTP sink that discards (benchmarks/smtp_sink.py), then the same sink writing
every message to a file and fsync'ing it before its 250, as a real mail server does:
  * raw: the same SmtpTransport and MessageTemplate without ledger or store (`send_fast` from
    benchmarks/send.py), measured before and after the campaigns: the baseline;
  * SQLite campaign: `newsletter.campaign.send_issue` in a child process (so its peak memory is
    its own): snapshot of the list, per-chunk subscriber lookups, unsubscribe tokens,
    per-recipient messages, inflight marks and batched result transactions;
  * PostgreSQL, 1 and 2 processes: `newsletter send ISSUE` alone, then with one
    `newsletter send ISSUE --worker` next to it (claims with SKIP LOCKED), each with
    `--concurrency` connections, on the database `--database` names, else on a private
    PostgreSQL server the benchmark starts (tests/support/pg_server.py; durable: fsync on,
    synchronous_commit off, as SQLite's WAL with synchronous=NORMAL); `--no-postgresql` skips them;
  * then, against a sink that delays every reply by 20 ms (a distant server), the SQLite
    campaign with 1 connection and with 32: the runner must let throughput scale.
Campaign rates are measured at the sink (messages counted from the first to the last poll that
saw progress), so one and several processes are timed alike. Goals (issue 12): the SQLite
campaign at >= 80% of the raw rate; two PostgreSQL processes at least as fast as SQLite;
(issue 5) peak RSS under 200 MB at 100,000 subscribers; 32 connections >= 20x one. CPU per
message of the SQLite campaign's sending phase (all threads, from the first message to the
end) is printed next to raw's: on a shared machine it is steadier than the rates.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from send import make_project, make_template, send_fast  # noqa: E402
from smtp_sink import SinkProcess  # noqa: E402

from newsletter.campaign import Progress, Tally  # noqa: E402
from newsletter.config import load_config  # noqa: E402
from newsletter.errors import NewsletterError  # noqa: E402
from newsletter.subscribers import SubscriberStore, import_csv  # noqa: E402

NAMES = ["Ann", "Zoë Ångström", "Bob O'Neil", "李雷", "Émilie", "", "Dr. Q. Public, Jr."]
GOAL_SQLITE = 0.80  # the SQLite campaign's share of the raw rate (issue 12)


def make_subscribers(folder: Path, n: int, list_name: str = "default") -> float:
    """n active subscribers on a list (imported as a user would); returns seconds."""
    path = folder / f"subscribers-{list_name}.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "name", "city"])
        for i in range(n):
            name = NAMES[i % len(NAMES)]
            email = f"{list_name}{i}@example.com"
            writer.writerow([email, f"{name} {i}" if name else "", "Springfield"])
    began = time.perf_counter()
    with SubscriberStore.for_config(load_config(folder / "newsletter.yaml")) as store:
        report = import_csv(store, path, list_name=list_name)
    assert report.added == n, report.summary()
    path.unlink()
    return time.perf_counter() - began


class _SendingCpu(Progress):
    """Process CPU seconds when the run starts sending and when it finishes (compiling the
    issue, imports and the snapshot of the list come before)."""

    def __init__(self) -> None:
        self.started = self.finished = 0.0

    def start(self, total: int, label: str) -> None:
        self.started = cpu_seconds()

    def finish(self, tally: Tally) -> None:
        self.finished = cpu_seconds()


def child(folder: Path, port: int, concurrency: int, list_name: str) -> None:
    """The SQLite campaign itself (runs in its own process); prints one JSON line."""
    from newsletter.campaign import send_issue

    config = load_config(folder / "newsletter.yaml")
    progress = _SendingCpu()
    began = time.perf_counter()
    report = send_issue(
        config,
        folder / "issues" / "bench.yaml",
        list_name=list_name,
        transport=f"smtp://127.0.0.1:{port}?tls=none&timeout=60",
        concurrency=concurrency,
        progress=progress,
    )
    elapsed = time.perf_counter() - began
    usage = resource.getrusage(resource.RUSAGE_SELF)
    summary = {
        "sent": report.counts.sent,
        "failed": report.counts.failed + report.counts.bounced,
        "elapsed": elapsed,
        "run_elapsed": report.elapsed,
        "rss_mb": usage.ru_maxrss / 1024,
        "cpu_us": (usage.ru_utime + usage.ru_stime) / report.counts.total * 1e6,
        "sending_cpu_us": (progress.finished - progress.started) / report.counts.total * 1e6,
    }
    print(json.dumps(summary))


def run_child(folder: Path, port: int, concurrency: int, list_name: str) -> dict:
    command = [sys.executable, __file__, "--child", str(folder), "--port", str(port)]
    command += ["--concurrency", str(concurrency), "--list", list_name]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"campaign failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _SendFailed(Exception):
    """A `newsletter send` of a PostgreSQL row exited non-zero."""


class SinkClock:
    """Polls the sink's count while a campaign runs: messages per second from the first poll
    that saw a message to the last one, whoever (one process or several) sent them."""

    def __init__(self, sink: SinkProcess, every: float = 0.02) -> None:
        self.sink, self.every = sink, every
        self.first: tuple[float, int] | None = None
        self.last: tuple[float, int] | None = None
        self._done = threading.Event()
        self._base = sink.count()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._done.is_set():
            now, count = time.perf_counter(), self.sink.count()
            if count > self._base:
                if self.first is None:
                    self.first = (now, count)
                if self.last is None or count > self.last[1]:
                    self.last = (now, count)
            self._done.wait(self.every)

    def __enter__(self) -> SinkClock:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    @property
    def delivered(self) -> int:
        return self.last[1] - self._base if self.last else 0

    @property
    def rate(self) -> float:
        if self.first is None or self.last is None or self.last[0] <= self.first[0]:
            return 0.0
        return (self.last[1] - self.first[1]) / (self.last[0] - self.first[0])


def cli_send(folder: Path, port: int, concurrency: int, list_name: str, worker: bool):
    """`newsletter send bench` (or `--worker`) as a user runs it, in its own process."""
    command = [sys.executable, "-m", "newsletter", "--config", str(folder / "newsletter.yaml")]
    command += ["send", "bench", "--list", list_name, "--concurrency", str(concurrency)]
    if worker:
        command.append("--worker")
    else:
        command += ["--yes", "--transport", f"smtp://127.0.0.1:{port}?tls=none&timeout=60"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def postgres_run(
    folder: Path, sink: SinkProcess, args: argparse.Namespace, processes: int, kind: str
) -> float:
    """One PostgreSQL campaign: the coordinating send and `processes - 1` workers; msg/s."""
    list_name = f"pg{processes}_{kind}_{os.getpid()}"  # a database given may have older ones
    try:
        make_subscribers(folder, args.n, list_name)
    except NewsletterError as exc:
        raise _SendFailed(f"the subscribers could not be imported into PostgreSQL: {exc}") from None
    with SinkClock(sink) as clock:
        procs = [cli_send(folder, sink.port, args.concurrency, list_name, worker=False)]
        procs += [
            cli_send(folder, sink.port, args.concurrency, list_name, worker=True)
            for _ in range(processes - 1)
        ]
        for proc in procs:
            out, err = proc.communicate()
            if proc.returncode != 0:
                for other in procs:
                    other.kill()
                    other.wait()
                last = (err.strip() or out.strip() or "no output").splitlines()[-1]
                command = " ".join(proc.args[3:])
                raise _SendFailed(f"`newsletter {command}` exited {proc.returncode}: {last}")
        time.sleep(3 * clock.every)  # a last poll after the last message
    assert clock.delivered == args.n, (clock.delivered, args.n)
    return clock.rate


@contextlib.contextmanager
def postgres_project(args: argparse.Namespace, folder: Path) -> Iterator[tuple[Path, str] | None]:
    """A project folder whose database is PostgreSQL: `--database`, else a private server."""
    if args.no_postgresql:
        yield None
        return
    pg_folder = folder / "pg"
    pg_folder.mkdir()
    make_project(pg_folder)
    server = None
    if args.database:
        url, where = args.database, "the database given with --database"
    else:
        sys.path.insert(0, str(REPO / "tests" / "support"))
        from pg_server import PostgresServer

        try:
            server = PostgresServer().start(durable=True)
        except RuntimeError as exc:
            print(f"PostgreSQL rows skipped: {str(exc).splitlines()[0]}")
            yield None
            return
        url = server.create_database("bench")
        where = "a private PostgreSQL server (fsync on, synchronous_commit off)"
    config = pg_folder / "newsletter.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(
        "\n".join(
            f"database: {url}" if line.startswith("database:") else line
            for line in text.splitlines()
        )
        + "\n",
        encoding="utf-8",
    )
    try:
        yield pg_folder, where
    finally:
        if server is not None:
            server.stop()


def sink_round(
    args: argparse.Namespace,
    folder: Path,
    template: object,
    pg: tuple[Path, str] | None,
    spool: Path | None,
) -> dict[str, float]:
    """Raw, SQLite campaign and PostgreSQL rows against one sink; prints them, returns rates."""
    kind = "fsync" if spool is not None else "discard"
    list_name = f"sqlite_{kind}"
    make_subscribers(folder, args.n, list_name)
    rates: dict[str, float] = {}
    with SinkProcess(spool=spool) as sink:
        send_fast(template, 200, sink.port, args.concurrency)  # warm-up
        cpu = cpu_seconds()
        raw_before = send_fast(template, args.raw_n, sink.port, args.concurrency)
        raw_cpu = cpu_seconds() - cpu
        with SinkClock(sink) as clock:
            result = run_child(folder, sink.port, args.concurrency, list_name)
            time.sleep(3 * clock.every)
        assert clock.delivered == args.n == result["sent"], (clock.delivered, result)
        rates["sqlite"] = clock.rate
        if pg is not None:
            try:
                rates["pg1"] = postgres_run(pg[0], sink, args, 1, kind)
                rates["pg2"] = postgres_run(pg[0], sink, args, 2, kind)
            except _SendFailed as exc:  # this checkout cannot send on PostgreSQL: say so
                print(f"PostgreSQL rows skipped: {exc}")
                pg = None
        cpu = cpu_seconds()
        raw_after = send_fast(template, args.raw_n, sink.port, args.concurrency, start=10**7)
        raw_cpu_us = (raw_cpu + cpu_seconds() - cpu) / (2 * args.raw_n) * 1e6
    raw = rates["raw"] = (raw_before + raw_after) / 2
    title = "fsync'ed to disk before each 250" if spool else "discarding (loopback, no disk)"
    print(f"\nsink {title}:")
    print(
        f"  raw                  {raw:7,.0f} msg/s   100%   {raw_cpu_us:4.0f} us CPU/msg   "
        f"(same transport and template, no ledger: {raw_before:,.0f} before, "
        f"{raw_after:,.0f} after)"
    )
    share = rates["sqlite"] / raw
    goal = "ok" if share >= GOAL_SQLITE else "MISSED"
    print(
        f"  SQLite campaign      {rates['sqlite']:7,.0f} msg/s   {share:4.0%}   "
        f"{result['sending_cpu_us']:4.0f} us CPU/msg   (goal >= {GOAL_SQLITE:.0%} of raw: "
        f"{goal}; {result['cpu_us']:.0f} us with compile and snapshot; peak RSS "
        f"{result['rss_mb']:.0f} MB, goal < 200 MB: {'ok' if result['rss_mb'] < 200 else 'MISSED'})"
    )
    if pg is not None:
        print(f"  PostgreSQL 1 process {rates['pg1']:7,.0f} msg/s   {rates['pg1'] / raw:4.0%}")
        versus = rates["pg2"] / rates["sqlite"]
        print(
            f"  PostgreSQL 2 processes {rates['pg2']:5,.0f} msg/s   {rates['pg2'] / raw:4.0%}"
            f"   ({versus:.2f}x the SQLite campaign; goal >= 1: "
            f"{'ok' if versus >= 1 else 'MISSED'})"
        )
    return rates


def delayed_run(folder: Path, n_many: int) -> None:
    """Against a sink that answers every command 20 ms late: 1 connection vs 32."""
    n_one = max(n_many // 32, 20)
    make_subscribers(folder, n_one, "slow1")
    make_subscribers(folder, n_many, "slow32")
    with SinkProcess(delay_ms=20) as sink:
        one = run_child(folder, sink.port, 1, "slow1")
        many = run_child(folder, sink.port, 32, "slow32")
    assert one["sent"] == n_one and many["sent"] == n_many, (one, many)
    rate_one, rate_many = n_one / one["run_elapsed"], n_many / many["run_elapsed"]
    ratio = rate_many / rate_one
    print(
        f"\n20 ms per reply: campaign with 1 connection {rate_one:6.1f} msg/s, 32 connections "
        f"{rate_many:7.1f} msg/s, ratio {ratio:5.1f}x   goal >= 20x: "
        f"{'ok' if ratio >= 20 else 'MISSED'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="subscribers per campaign")
    parser.add_argument("--raw-n", type=int, default=20_000, help="messages per raw run")
    parser.add_argument("--concurrency", type=int, default=4, help="connections per process")
    parser.add_argument(
        "--database",
        help="postgresql://... for the PostgreSQL rows (default: a private server started "
        "for the run)",
    )
    parser.add_argument("--no-postgresql", action="store_true", help="skip the PostgreSQL rows")
    parser.add_argument("--skip-fsync", action="store_true", help="skip the fsync'ing sink")
    parser.add_argument("--delayed-n", type=int, default=1_600, help="messages, 32 connections")
    parser.add_argument("--skip-delayed", action="store_true")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--list", default="default", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.port, args.concurrency, args.list)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_project(folder)
        template, _ = make_template(folder)
        print(
            f"{args.n:,} subscribers per campaign, {args.concurrency} connections per process, "
            f"~50 KB messages; load average {os.getloadavg()[0]:.1f} at start"
        )
        with postgres_project(args, folder) as pg:
            if pg is not None:
                print(f"PostgreSQL: {pg[1]}")
            sink_round(args, folder, template, pg, None)
            if not args.skip_fsync:
                sink_round(args, folder, template, pg, folder / "spool")
        if not args.skip_delayed:
            delayed_run(folder, args.delayed_n)
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
