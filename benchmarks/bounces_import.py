"""`newsletter bounces import` on 100,000 DSNs in one mbox file: messages per second.

Measured in the same run (the machine is shared and noisy: compare ratios):
  * stdlib parse: reading the same mbox with `mailbox` and parsing every message with the
    standard library's email parser alone (`email.message_from_bytes`), the floor for any reader;
  * reading: the same plus our parsing into events (`newsletter.bounces.reading.read_message`);
  * import: the whole `bounces import` (reading, parsing, and applying every event to a SQLite
    database of 100,000 subscribers through the one policy), then again (all already recorded).
The DSNs rotate through the Postfix, Exim, Exchange Online and Gmail shapes of the tests,
nine in ten hard bounces, one in ten soft (mailbox full), each naming a different subscriber.

    .venv/bin/python benchmarks/bounces_import.py [--messages 100000]
"""

from __future__ import annotations

import argparse
import email
import mailbox
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.bounces.mailbox import import_mail
from newsletter.bounces.reading import read_message
from newsletter.bounces.report import MailboxAddresses
from newsletter.config import load_config
from newsletter.subscribers import SubscriberStore, import_csv
from tests.support import bounce_mail as shapes


def make_mbox(path: Path, count: int) -> None:
    box = mailbox.mbox(path)
    box.lock()
    for i in range(count):
        rcpt = f"reader{i}@example.net"
        mid = f"{i}.issue12@news.example.org"
        shape = i % 4
        if i % 10 == 9:
            raw = shapes.gmail_dsn(rcpt, "", mid, status="4.2.2")
        elif shape == 0:
            raw = shapes.postfix_dsn(rcpt, "", mid)
        elif shape == 1:
            raw = shapes.exim_dsn(rcpt, "", mid)
        elif shape == 2:
            raw = shapes.exchange_dsn(rcpt, "", mid)
        else:
            raw = shapes.gmail_dsn(rcpt, "", mid)
        # a unique report Message-ID per bounce, as real servers give
        raw = raw.replace(b"Date:", f"Message-ID: <dsn-{i}@mx.example.net>\r\nDate:".encode(), 1)
        box.add(raw)
    box.flush()
    box.unlock()
    box.close()


def timed(label: str, count: int, fn: Callable[[], object]) -> float:
    """Run `fn`; print wall and CPU time; return messages per CPU second (the figure that the
    shared machine's load disturbs least: every phase runs in this one process)."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    rate = count / used
    print(f"{label:<50} {elapsed:7.1f} s wall {used:7.1f} s CPU {rate:8,.0f} messages/CPU-s")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    n = args.messages
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "newsletter.yaml").write_text(
            "name: Bench\nfrom: Bench <news@news.example.org>\nbase_url: https://news.example.org\n"
            "postal_address: 1 Test Street\ndatabase: bench.db\n"
            "bounces:\n  address: bounces@news.example.org\n"
        )
        config = load_config(folder / "newsletter.yaml")
        csv_path = folder / "readers.csv"
        csv_path.write_text("email\n" + "".join(f"reader{i}@example.net\n" for i in range(n)))
        with SubscriberStore.for_config(config) as store:
            import_csv(store, csv_path)
        box_path = folder / "bounces.mbox"
        make_mbox(box_path, n)
        size = box_path.stat().st_size
        print(f"{n:,} DSNs, {size / 1e6:.0f} MB mbox, {n:,} subscribers")

        def stdlib() -> None:
            box = mailbox.mbox(box_path, create=False)
            for key in box.iterkeys():
                email.message_from_bytes(box.get_bytes(key))
            box.close()

        addresses = MailboxAddresses(bounce_address=config.bounces.address)

        def reading() -> None:
            box = mailbox.mbox(box_path, create=False)
            for key in box.iterkeys():
                read_message(box.get_bytes(key), addresses)
            box.close()

        results: dict[str, object] = {}

        def first() -> None:
            results["first"] = import_mail(config, [box_path])

        def again() -> None:
            results["again"] = import_mail(config, [box_path])

        base = timed("stdlib: mailbox + email.message_from_bytes", n, stdlib)
        read = timed("reading: + read_message (events, no database)", n, reading)
        full = timed("bounces import (first time: applied)", n, first)
        repeat = timed("bounces import (again: all already recorded)", n, again)
        print(results["first"].summary())  # type: ignore[attr-defined]
        print(results["again"].summary())  # type: ignore[attr-defined]
        print(
            f"CPU time per message: reading is {base / read:.2f}x the stdlib parse; bounces "
            f"import {base / full:.2f}x (again: {base / repeat:.2f}x); load average "
            f"{os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main()
