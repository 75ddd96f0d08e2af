"""Watch, rebuild, tell the browsers: the live-reload loop (the mkdocs-serve model).

Watched: the issue file, newsletter.yaml (or where it would appear), and every theme folder (the
built-in one and `config.templates`). Single files are watched through their folder, because
editors save by writing a new file and renaming it over the old one. A burst of saves is
coalesced: a rebuild starts once the files have been quiet for `QUIET_SECONDS` (or at the latest
after `MAX_WAIT_SECONDS`), and saves arriving during a rebuild cause exactly one more.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import anyio
from watchfiles import Change, DefaultFilter, awatch
from watchfiles.main import FileChange

from newsletter.config import CONFIG_NAME

QUIET_SECONDS = 0.05
MAX_WAIT_SECONDS = 0.4
WATCHER_SETUP_SECONDS = 0.05


@dataclass(frozen=True)
class WatchSet:
    """What to watch: single files (watched through their folder) and whole folders."""

    files: frozenset[Path]
    folders: frozenset[Path]

    @property
    def file_parents(self) -> frozenset[Path]:
        return frozenset(p.parent for p in self.files if p.parent.is_dir())

    @property
    def existing_folders(self) -> frozenset[Path]:
        return frozenset(p for p in self.folders if p.is_dir())


def watch_set(
    issue: Path,
    config_file: Path | None,
    root: Path,
    themes: Iterable[Path],
    images: Iterable[Path] = (),
) -> WatchSet:
    """The issue, the configuration, the theme folders and the issue's local image files."""
    config = config_file or root / CONFIG_NAME  # watched even before it exists
    folders = frozenset(Path(t).resolve() for t in themes)
    # A theme folder that does not exist yet is watched for its creation, like a file.
    missing = {f for f in folders if not f.is_dir()}
    return WatchSet(
        files=frozenset({issue.resolve(), config.resolve(), *missing, *images}),
        folders=folders - missing,
    )


class Hub:
    """The latest build, and every open page waiting to hear about the next one."""

    def __init__(self) -> None:
        self.version = 0
        self.ok = False
        self._listeners: set[asyncio.Queue[str | None]] = set()
        self.closed = False

    @property
    def event(self) -> str:
        """The Server-Sent Events data line announcing the latest build."""
        return json.dumps({"version": self.version, "ok": self.ok})

    def listen(self) -> asyncio.Queue[str | None]:
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._listeners.add(queue)
        if self.closed:
            queue.put_nowait(None)
        return queue

    def forget(self, queue: asyncio.Queue[str | None]) -> None:
        self._listeners.discard(queue)

    def publish(self, version: int, ok: bool) -> None:
        self.version, self.ok = version, ok
        for queue in self._listeners:
            queue.put_nowait(self.event)

    def close(self) -> None:
        """End every event stream (the server is shutting down)."""
        self.closed = True
        for queue in self._listeners:
            queue.put_nowait(None)


class Rebuilder:
    """Runs `rebuild` after changes, one build at a time, coalescing bursts."""

    def __init__(
        self,
        rebuild: Callable[[frozenset[FileChange]], object],
        current_watch_set: Callable[[], WatchSet],
    ) -> None:
        self.rebuild = rebuild
        self.current_watch_set = current_watch_set
        self.builds = 0
        self._changes: set[FileChange] = set()
        self._watching: WatchSet | None = None
        self.ready = threading.Event()  # set once the first watchers are set up
        self._dirty = asyncio.Event()
        self._stop = anyio.Event()
        self._restart = anyio.Event()

    def stop(self) -> None:
        self._stop.set()
        self._restart.set()
        self._dirty.set()

    def changed(self, changes: Iterable[FileChange] = ()) -> None:
        self._changes.update(changes)
        self._dirty.set()

    async def run(self) -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._build_loop)
            await self._watch_loop()
            tasks.cancel_scope.cancel()

    async def _build_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            await self._dirty.wait()
            if self._stop.is_set():
                return
            first = loop.time()
            # Wait for the burst to end: quiet for QUIET_SECONDS, or MAX_WAIT_SECONDS overall.
            while True:
                self._dirty.clear()
                await asyncio.sleep(QUIET_SECONDS)
                if not self._dirty.is_set() or loop.time() - first >= MAX_WAIT_SECONDS:
                    break
            self._dirty.clear()
            changes, self._changes = frozenset(self._changes), set()
            await anyio.to_thread.run_sync(self.rebuild, changes)
            self.builds += 1
            if self.current_watch_set() != self._watching:
                # config.templates points elsewhere now, or a theme folder appeared.
                self._restart.set()

    async def _watch_loop(self) -> None:
        restarted = False
        while not self._stop.is_set():
            self._restart = anyio.Event()
            watched = self._watching = self.current_watch_set()
            async with anyio.create_task_group() as tasks:
                if watched.file_parents:
                    tasks.start_soon(self._watch, watched.file_parents, False, watched.files)
                if watched.existing_folders:
                    tasks.start_soon(self._watch, watched.existing_folders, True, None)
                await anyio.sleep(WATCHER_SETUP_SECONDS)
                if restarted:
                    # A file saved in a newly watched folder before its watcher started would
                    # go unnoticed: build once more now that the watchers are up.
                    self.changed()
                self.ready.set()
                await self._restart.wait()
                tasks.cancel_scope.cancel()
            restarted = True

    async def _watch(
        self, paths: frozenset[Path], recursive: bool, only: frozenset[Path] | None
    ) -> None:
        polling = False
        while not self._restart.is_set():
            try:
                async for changes in awatch(
                    *sorted(paths),
                    watch_filter=_Filter(only),
                    recursive=recursive,
                    debounce=int(MAX_WAIT_SECONDS * 1000),
                    step=20,
                    stop_event=self._restart,
                    rust_timeout=500,
                    force_polling=polling,
                    poll_delay_ms=200,
                ):
                    if changes:
                        self.changed(changes)
                return
            except FileNotFoundError:
                return  # a watched folder vanished; the next rebuild recomputes what to watch
            except OSError:
                if polling:
                    raise
                polling = True  # e.g. the system's inotify watch limit is reached


class _Filter(DefaultFilter):
    def __init__(self, only: frozenset[Path] | None) -> None:
        super().__init__()
        self.only = {str(p) for p in only} if only is not None else None

    def __call__(self, change: Change, path: str) -> bool:
        if self.only is not None and str(Path(path).resolve()) not in self.only:
            return False
        return super().__call__(change, path)
