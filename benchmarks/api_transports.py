"""Benchmark: the email-API transports against their local stand-in servers, next to SMTP.

    python benchmarks/api_transports.py [--n 10000] [--ses-n 1000] [--concurrency 4]

For SendGrid, Mailgun, Postmark, Resend and SES (moto), in one run: personalised ~50 KB messages
(MessageTemplate, built once) handed to the transport in batches of its `max_batch` by
`--concurrency` threads, as the campaign runner does; it prints recipients per second and HTTP
requests per 10,000 recipients, next to the SMTP transport's rate into the loopback sink
(`smtp_sink.py`) with as many connections. The runs are interleaved in `--rounds` rounds (SMTP,
then each provider, again and again) so that the shared machine's load hits all alike. Each
server runs in its own process (`tests/support/provider_servers.py`, contract checks on,
per-recipient rendering off) and is asked at the end how many recipients it accepted, so a
figure cannot come from messages that never left.

What the figures mean: the servers answer at once, so this measures our side (building each
recipient's content, merging SendGrid/Mailgun batches into one template, JSON/form encoding,
HTTP) plus the stand-in's parsing, not the providers' real latency or rate limits.

    python benchmarks/api_transports.py --throttled

Instead: one default `newsletter send` (a subprocess, as a user runs it) per provider against
stand-ins that throttle as documented, timed against the provider's published limit: SES at
14 sends/s (MaxSendRate in GetAccount, 429 Throttling without Retry-After) to 500 readers
(ideal 35.7 s), Resend at 2 requests/s (`ratelimit-*`, `retry-after`) to 2,000 readers (20
batches of 100: ideal 9.5 s, the first request going at once), and SendGrid allowing 2
requests/s without saying so beforehand, sent with `--rate 200/s` (batches of 50: 20 requests,
ideal 9.5 s). It prints the time, the ratio to the ideal, the throttled requests and the pace
the run settled at; every reader must have received one copy. CLI start-up is included.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from send import make_project, make_template, recipients, send_fast  # noqa: E402
from smtp_sink import SinkProcess  # noqa: E402

from newsletter.config import load_config  # noqa: E402
from newsletter.mail.message import MessageTemplate  # noqa: E402
from newsletter.transports import transport_class, transport_from_url  # noqa: E402

KEY = "bench-key-0123456789"
MAILGUN_DOMAIN = "news.example.com"
PROVIDERS = ["sendgrid", "mailgun", "postmark", "resend", "ses"]


class ServerProcess:
    """One provider's stand-in server in a subprocess; `url` once it listens."""

    def __init__(self, provider: str, identity: str) -> None:
        domain = identity if provider == "ses" else MAILGUN_DOMAIN
        server = REPO / "tests" / "support" / "provider_servers.py"
        self.args = [sys.executable, str(server), provider, KEY, domain]
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> ServerProcess:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().split()
        if first[:1] != ["PORT"]:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {first}")
        self.url = f"http://127.0.0.1:{first[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    def stats(self) -> dict:
        with urllib.request.urlopen(self.url + "/__stats", timeout=30) as reply:
            return json.load(reply)


def url_and_env(provider: str, endpoint: str) -> tuple[str, dict[str, str]]:
    if provider == "ses":
        env = {"AWS_ACCESS_KEY_ID": "AKIABENCHMARK0000001", "AWS_SECRET_ACCESS_KEY": KEY}
        return f"ses:eu-west-1?endpoint={endpoint}", env
    variable = transport_class(provider).secret_variable  # type: ignore[attr-defined]
    target = MAILGUN_DOMAIN if provider == "mailgun" else ""
    return f"{provider}:{target}?endpoint={endpoint}", {variable: KEY}


def send_api(
    template: MessageTemplate, provider: str, endpoint: str, n: int, concurrency: int, start: int
) -> tuple[float, int]:
    """Send n recipients the way the runner would; return (seconds, HTTP requests)."""
    url, env = url_and_env(provider, endpoint)
    transport = transport_from_url(url, template.config, env)
    transport.open()
    items = list(recipients(n, start))
    size = transport.max_batch
    batches = [items[i : i + size] for i in range(0, len(items), size)]
    failures: list[str] = []

    def one(batch: list) -> None:
        messages = [template.outgoing(k, r, u, k) for k, r, u in batch]
        for result in transport.send(messages):
            if result.status != "sent":
                failures.append(result.reply)

    began = time.perf_counter()
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, batches))
    finally:
        elapsed = time.perf_counter() - began
        transport.close()
    if failures:
        raise RuntimeError(f"{provider}: {len(failures)} not sent, e.g. {failures[0]}")
    return elapsed, transport.requests  # type: ignore[attr-defined]


def add(total: list, n: int, seconds: float, requests: int, cpu: float) -> None:
    for i, value in enumerate((n, seconds, requests, cpu)):
        total[i] += value


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        make_project(folder)
        template, _ = make_template(folder)
        identity = template.config.sender_domain
        rounds = max(1, args.rounds)
        print(
            f"~50 KB personalised messages; {args.concurrency} threads (SMTP: connections); "
            f"{args.n:,} recipients per API provider, {args.ses_n:,} for SES (moto is slow), "
            f"{args.smtp_n:,} over SMTP; {rounds} interleaved rounds; load average "
            f"{os.getloadavg()[0]:.1f}"
        )
        sink = stack.enter_context(SinkProcess())
        servers = {p: stack.enter_context(ServerProcess(p, identity)) for p in args.providers}
        send_fast(template, 200, sink.port, args.concurrency)  # warm-up
        for provider, server in servers.items():
            send_api(template, provider, server.url, 100, args.concurrency, 0)
        # per transport: recipients, seconds, HTTP requests, sender CPU seconds (this process:
        # our side only; the sink and the stand-ins run in processes of their own)
        totals = {name: [0, 0.0, 0, 0.0] for name in ["smtp", *servers]}
        start = 1_000_000
        for _ in range(rounds):
            n = args.smtp_n // rounds
            cpu = time.process_time()
            rate = send_fast(template, n, sink.port, args.concurrency, start=start)
            add(totals["smtp"], n, n / rate, 0, time.process_time() - cpu)
            start += n
            for provider, server in servers.items():
                n = (args.ses_n if provider == "ses" else args.n) // rounds
                cpu = time.process_time()
                elapsed, requests = send_api(
                    template, provider, server.url, n, args.concurrency, start
                )
                add(totals[provider], n, elapsed, requests, time.process_time() - cpu)
                start += n
        for provider, server in servers.items():
            if provider != "ses":
                stats = server.stats()
                assert stats["violations"] == [], stats["violations"][:3]
                accepted = stats["delivered"] - 100
                sent = totals[provider][0]
                assert accepted == sent, f"{provider}: server accepted {accepted} of {sent}"
        smtp = totals["smtp"][0] / totals["smtp"][1]
        print(
            f"{'transport':<10} {'recipients/s':>13} {'vs SMTP':>8} {'HTTP req/10k':>13} "
            f"{'sender CPU/recipient':>21}"
        )
        for name, (sent, seconds, requests, cpu) in totals.items():
            rate = sent / seconds
            per10k = f"{requests * 10_000 / sent:,.0f}" if name != "smtp" else "-"
            print(
                f"{name:<10} {rate:>13,.0f} {rate / smtp:>7.2f}x {per10k:>13} "
                f"{cpu / sent * 1e6:>18,.0f} µs"
            )


THROTTLED = [
    # provider, readers, stand-in limit (requests/s), extra send options, ideal seconds
    ("ses", 500, 14.0, [], 499 / 14),
    ("resend", 2_000, 2.0, [], 19 / 2),
    ("sendgrid", 1_000, 2.0, ["--rate", "200/s"], 19 / 2),
]


def throttled_server(provider: str, per_second: float, identity: str) -> Any:
    """The stand-in, in this process, allowing `per_second` requests (SES: sends) a second."""
    sys.path.insert(0, str(REPO / "tests" / "support"))
    from provider_servers import ResendServer, SendGridServer, SesServer

    if provider == "ses":
        import boto3

        ses = SesServer("AKIABENCHMARK0000001", "eu-west-1", max_send_rate=per_second).start()
        boto3.client(
            "sesv2",
            region_name="eu-west-1",
            endpoint_url=ses.url,
            aws_access_key_id="AKIABENCHMARK0000001",
            aws_secret_access_key=KEY,
        ).create_email_identity(EmailIdentity=identity)
        return ses
    server = {"resend": ResendServer, "sendgrid": SendGridServer}[provider](KEY, render=False)
    server.limit(per_second)
    return server.start()


def newsletter(folder: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        cwd=folder,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"newsletter {' '.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout + done.stderr


def run_throttled() -> None:
    print(f"one default `newsletter send` per provider; load average {os.getloadavg()[0]:.1f}")
    print(
        f"{'provider':<9} {'readers':>8} {'limit':>7} {'ideal':>7} {'took':>7} {'ratio':>6}  pace"
    )
    for provider, readers, limit, extra, ideal in THROTTLED:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            make_project(folder)
            with open(folder / "subs.csv", "w", encoding="utf-8") as f:
                f.write("email,name\n")
                f.writelines(f"reader{i:06d}@example.net,Reader {i}\n" for i in range(readers))
            newsletter(folder, {}, "subscribers", "import", "subs.csv")
            identity = load_config(folder / "newsletter.yaml").sender_domain
            server = throttled_server(provider, limit, identity)
            try:
                url, env = url_and_env(provider, server.url)
                began = time.perf_counter()
                output = newsletter(
                    folder, env, "send", "bench", "--transport", url, "--yes", *extra
                )
                took = time.perf_counter() - began
                got = len(server.sent()) if provider == "ses" else server.delivered_count
                assert got == readers, f"{provider}: {got} of {readers} received"
            finally:
                server.stop()
            pace = next(
                (line for line in output.splitlines() if "throttled" in line or "Paced" in line),
                "",
            )
            print(
                f"{provider:<9} {readers:>8,} {limit:>5g}/s {ideal:>6.1f}s {took:>6.1f}s "
                f"{took / ideal:>5.2f}x  {pace}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="recipients per API provider")
    parser.add_argument("--ses-n", type=int, default=1_000, help="recipients for SES (moto)")
    parser.add_argument("--smtp-n", type=int, default=10_000, help="messages for SMTP")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--providers", nargs="+", default=PROVIDERS, choices=PROVIDERS)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument(
        "--throttled", action="store_true", help="time a run against throttling stand-ins"
    )
    args = parser.parse_args()
    if args.throttled:
        run_throttled()
    else:
        run(args)


if __name__ == "__main__":
    main()
