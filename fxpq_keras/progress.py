"""Progress of a long job (the FxP-QNet search) for a person watching a console or a log.

Why not keras.utils.Progbar: it draws nothing until the first update, starts at `ETA: 0s`,
prints its final line twice with per-step timing that means nothing for our steps, crashes on a
bar of 0 steps, and writes nothing useful to a pipe until the end. Here:

- on a terminal, a live bar is drawn as soon as the counted task starts (`ETA: ?` until the
  first step is done), redrawn in place, and its final line is printed once;
- elsewhere (a pipe, a CI log), every phase is one line and a progress line with elapsed time and
  an estimate of the time left is printed every `interval` seconds, then one final line.

Phases are printed in both modes. Every line starts with the elapsed time since the Progress was
made. The search calls `phase`, `start`, `update` and `finish`; nothing here knows the search.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

Values = Sequence[tuple[str, object]]  # (name, value): printed as `name value`


def duration(seconds: float) -> str:
    """`42s`, `3m05s`, `1h02m`: short enough for a bar."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(callable(isatty) and isatty())


class Progress:
    """Phase lines and one counted task (`start` .. `finish`) on `stream` (stdout by default)."""

    INTERVAL = 10.0  # seconds between progress lines when not on a terminal

    def __init__(self, stream: TextIO | None = None, *, terminal: bool | None = None, interval: float | None = None,
                 width: int = 24, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.terminal = is_terminal(self.stream) if terminal is None else terminal
        self.interval = self.INTERVAL if interval is None else interval
        self.width = width
        self.clock = clock
        self.began = clock()
        self.total = 0
        self.unit = "step"
        self.done = 0
        self.values: Values = ()
        self._task_began: float | None = None
        self._last_line = -float("inf")
        self._bar_shown = False
        self._finished = False

    # -- what the caller says --------------------------------------------------------------------
    def phase(self, text: str) -> None:
        """One line saying what is being done now."""
        self._clear_bar()
        self._write(f"{self._stamp()} {text}\n")
        self._draw_bar()

    def start(self, total: int, unit: str = "step", values: Values = ()) -> None:
        """Begin the counted task of at most `total` units (0 is fine: nothing to do)."""
        self.total, self.unit, self.done, self.values = max(int(total), 0), unit, 0, values
        self._task_began = self.clock()
        self._finished = False
        self._last_line = self._task_began
        if self.terminal:
            self._bar_shown = True
            self._draw_bar()

    def update(self, done: int, values: Values = ()) -> None:
        """`done` units of `total` so far, with the values worth watching (e.g. average bits)."""
        if self._task_began is None or self._finished:
            return
        self.done = min(max(int(done), 0), self.total)
        self.values = values or self.values
        now = self.clock()
        if self.terminal:
            self._draw_bar()
        elif now - self._last_line >= self.interval:
            self._last_line = now
            self._write(f"{self._stamp()} {self._status(now)}\n")

    def finish(self, values: Values = (), message: str = "") -> None:
        """The final line, printed once (later calls do nothing)."""
        if self._task_began is None or self._finished:
            return
        self._finished = True
        self.values = values or self.values
        self.done = self.total
        took = self.clock() - self._task_began
        self._clear_bar()
        self._bar_shown = False
        text = f"{self._counts()} in {duration(took)}{self._values()}"
        self._write(f"{self._stamp()} done: {text}{'; ' + message if message else ''}\n")

    # -- drawing ----------------------------------------------------------------------------------
    def _stamp(self) -> str:
        return f"[{duration(self.clock() - self.began):>6}]"

    def _counts(self) -> str:
        plural = "" if self.total == 1 else "s"
        return f"{self.done}/{self.total} {self.unit}{plural}"

    def _values(self) -> str:
        return "".join(f", {name} {value:.4g}" if isinstance(value, float) else f", {name} {value}"
                       for name, value in self.values)

    def eta(self, now: float) -> str:
        """Time left at the average pace so far; `?` before the first unit is done."""
        if self._task_began is None or self.done <= 0:
            return "?"
        pace = (now - self._task_began) / self.done
        return duration(pace * (self.total - self.done))

    def _status(self, now: float) -> str:
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (f"{self._counts()} ({pct:.0f}%), elapsed {duration(now - (self._task_began or now))}, "
                f"ETA {self.eta(now)}{self._values()}")

    def _draw_bar(self) -> None:
        if not (self.terminal and self._bar_shown):
            return
        filled = self.width * self.done // self.total if self.total else self.width
        bar = "=" * filled + "." * (self.width - filled)
        self._write(f"\r\x1b[K{self._stamp()} [{bar}] {self._status(self.clock())}")

    def _clear_bar(self) -> None:
        if self.terminal and self._bar_shown:
            self._write("\r\x1b[K")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


__all__ = ["Progress", "duration", "is_terminal"]
