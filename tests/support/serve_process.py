"""`newsletter serve` as a real process (its lifespan runs the background task): started in a
project with extra environment, its URL read from its first line, stopped with Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class ServeProcess:
    def __init__(self, process: subprocess.Popen[str], url: str, first: str) -> None:
        self.process = process
        self.url = url
        self.lines: list[str] = [first]
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        return self.output


@contextmanager
def serve_process(project: Path, **environ: str) -> Iterator[ServeProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--port", "0"],
        cwd=project,
        env={**env, **environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    first = process.stderr.readline()
    match = re.search(r"on (http://127\.0\.0\.1:\d+)", first)
    if match is None:
        process.kill()
        raise AssertionError(f"serve did not start: {first}{process.stderr.read()}")
    server = ServeProcess(process, match.group(1), first)
    try:
        yield server
    finally:
        server.stop()
