"""Progress for long commands: a bar on a terminal (tqdm); elsewhere (a CI log) one line at least
every `every` seconds, so that a slow notebook never looks like a hang."""
from __future__ import annotations

import sys
import threading
import time


class Progress:
    def __init__(self, total: int, what: str, unit: str = "notebooks", every: float = 30.0, stream=None) -> None:
        self.total, self.what, self.unit, self.every = total, what, unit, every
        self.stream = stream or sys.stderr
        self.done, self.started = 0, time.monotonic()
        self._bar = None
        self._stop = threading.Event()
        if self.stream.isatty():
            from tqdm import tqdm
            self._bar = tqdm(total=total, unit=unit[:2], desc=what, file=self.stream)
        else:
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()

    def _line(self) -> None:
        print(f"{self.what}: {self.done}/{self.total} {self.unit}, {time.monotonic() - self.started:.0f} s",
              file=self.stream, flush=True)

    def _tick(self) -> None:
        while not self._stop.wait(self.every):
            if self.done < self.total:        # all done: the last line is close()'s
                self._line()

    def update(self, *_: object) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update()

    def close(self, quiet: bool = False) -> None:
        """End it; the last line unless `quiet` (a command that failed says one line, its own)."""
        if self._bar is not None:
            self._bar.close()
        else:
            self._stop.set()
            self._thread.join()
            if not quiet:
                self._line()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, kind, *_: object) -> None:
        self.close(quiet=kind is not None)
