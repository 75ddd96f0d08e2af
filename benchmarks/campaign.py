"""Benchmark: a whole campaign (ledger, store, workers) to 100,000 subscribers, vs raw sending.

    python benchmarks/campaign.py [--n 100000] [--raw-n 20000] [--concurrency 4]
                                  [--delayed-n 1600] [--skip-delayed]

In one run, against the minimal loopback SMTP sink (benchmarks/smtp_sink.py) and the same
~50 KB issue as benchmarks/send.py:
  * campaign: `newsletter.campaign.send_issue` in a child process (so its peak memory is its
    own): snapshot of the list, per-chunk subscriber lookups, unsubscribe tokens, per-recipient
    messages, inflight marks and batched result transactions, one SMTP connection per worker;
  * raw: the same SmtpTransport and MessageTemplate without ledger or store (`send_fast` from
    benchmarks/send.py), measured before and after the campaign: the baseline;
  * then, against a sink that delays every reply by 20 ms (a distant server), the campaign with
    1 connection and with 32: the runner must let throughput scale with `--concurrency`.
Goals (issue 5): peak RSS under 200 MB at 100,000 subscribers (stream from the database); the
campaign keeps most of the raw transport's rate; 32 connections give at least 20x one. Every
message is counted at the sink. CPU per message (the campaign process's whole CPU time, with
compiling and the snapshot) is printed next to each rate: on a shared machine it is steadier.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from send import make_project, make_template, send_fast  # noqa: E402
from smtp_sink import SinkProcess  # noqa: E402

from newsletter.config import load_config  # noqa: E402
from newsletter.subscribers import SubscriberStore, import_csv  # noqa: E402

NAMES = ["Ann", "Zoë Ångström", "Bob O'Neil", "李雷", "Émilie", "", "Dr. Q. Public, Jr."]


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
    return time.perf_counter() - began


def child(folder: Path, port: int, concurrency: int, list_name: str) -> None:
    """The campaign itself (runs in its own process); prints one JSON line."""
    from newsletter.campaign import send_issue

    config = load_config(folder / "newsletter.yaml")
    began = time.perf_counter()
    report = send_issue(
        config,
        folder / "issues" / "bench.yaml",
        list_name=list_name,
        transport=f"smtp://127.0.0.1:{port}?tls=none&timeout=60",
        concurrency=concurrency,
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


def main_run(args: argparse.Namespace, folder: Path) -> None:
    template, _ = make_template(folder)
    imported = make_subscribers(folder, args.n)
    print(
        f"{args.n:,} subscribers (imported in {imported:.1f}s), "
        f"{args.concurrency} connections, ~50 KB messages"
    )
    with SinkProcess() as sink:
        send_fast(template, 200, sink.port, args.concurrency)  # warm-up
        before_count = sink.count()
        cpu = cpu_seconds()
        raw_before = send_fast(template, args.raw_n, sink.port, args.concurrency)
        raw_cpu = cpu_seconds() - cpu
        after_raw = sink.count()
        result = run_child(folder, sink.port, args.concurrency, "default")
        after_campaign = sink.count()
        cpu = cpu_seconds()
        raw_after = send_fast(template, args.raw_n, sink.port, args.concurrency, start=10**7)
        raw_cpu_us = (raw_cpu + cpu_seconds() - cpu) / (2 * args.raw_n) * 1e6
    assert after_raw - before_count == args.raw_n
    delivered = after_campaign - after_raw
    assert delivered == args.n == result["sent"], (delivered, result)
    campaign_rate = args.n / result["run_elapsed"]
    raw = (raw_before + raw_after) / 2
    print(
        f"campaign   {campaign_rate:8,.0f} msg/s   {result['cpu_us']:5.0f} us CPU/message   "
        f"({args.n:,} messages, all counted at the sink; {result['elapsed']:.1f}s with "
        "compile and snapshot)"
    )
    print(
        f"raw        {raw:8,.0f} msg/s   {raw_cpu_us:5.0f} us CPU/message   (same transport "
        f"and template, no ledger: {raw_before:,.0f} before, {raw_after:,.0f} after)"
    )
    print(
        f"ratio      {campaign_rate / raw:8.0%}   of the raw rate; "
        f"{raw_cpu_us / result['cpu_us']:.0%} of its CPU efficiency"
    )
    ok = result["rss_mb"] < 200
    print(
        f"peak RSS   {result['rss_mb']:8.0f} MB   (campaign process)   goal < 200 MB: "
        f"{'ok' if ok else 'MISSED'}"
    )


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
        f"20 ms per reply: campaign with 1 connection {rate_one:6.1f} msg/s, 32 connections "
        f"{rate_many:7.1f} msg/s, ratio {ratio:5.1f}x   goal >= 20x: "
        f"{'ok' if ratio >= 20 else 'MISSED'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="subscribers")
    parser.add_argument("--raw-n", type=int, default=20_000, help="messages per raw run")
    parser.add_argument("--concurrency", type=int, default=4)
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
        main_run(args, folder)
        if not args.skip_delayed:
            delayed_run(folder, args.delayed_n)


if __name__ == "__main__":
    main()
