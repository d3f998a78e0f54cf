"""The progress printer (fxpq_keras/progress.py) as a person sees it, with a fake clock."""

from __future__ import annotations

import io

import pytest

from fxpq_keras.progress import Progress, duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _progress(terminal: bool, interval: float = 10.0) -> tuple[Progress, io.StringIO, Clock]:
    out, clock = io.StringIO(), Clock()
    return Progress(out, terminal=terminal, interval=interval, clock=clock), out, clock


def test_pipe_gets_phase_lines_periodic_estimates_and_one_final_line() -> None:
    p, out, clock = _progress(terminal=False)
    p.phase("calibrating")
    clock.now += 3
    p.start(100, "bit step", [("avg bits", "16.00")])
    assert out.getvalue() == "[    0s] calibrating\n"  # nothing drawn in place on a pipe
    clock.now += 4
    p.update(10)
    assert out.getvalue().count("\n") == 1  # not yet: one line per interval
    clock.now += 16
    p.update(40, [("avg bits", "9.50")])
    line = out.getvalue().splitlines()[-1]
    # 40 steps in 20 s -> 60 left at the same pace take 30 s
    assert line == "[   23s] 40/100 bit steps (40%), elapsed 20s, ETA 30s, avg bits 9.50", line
    clock.now += 5
    p.finish(message="budget reached")
    p.finish()
    lines = out.getvalue().splitlines()
    assert lines[-1] == "[   28s] done: 100/100 bit steps in 25s, avg bits 9.50; budget reached"
    assert sum("done:" in line for line in lines) == 1 and "\r" not in out.getvalue()


def test_terminal_bar_is_drawn_at_start_and_its_final_line_printed_once() -> None:
    p, out, clock = _progress(terminal=True)
    p.start(10, "bit step")
    first = out.getvalue()
    assert "0/10 bit steps" in first and "ETA ?" in first and "ETA 0s" not in first  # drawn before any step
    clock.now += 10
    p.update(5)
    assert out.getvalue().endswith("5/10 bit steps (50%), elapsed 10s, ETA 10s")
    p.phase("a phase line while the bar is live")
    assert "\r\x1b[K[   10s] a phase line while the bar is live\n" in out.getvalue()
    clock.now += 10
    p.finish()
    p.finish()
    p.update(7)  # after the end: nothing
    text = out.getvalue()
    assert text.count("done:") == 1 and text.endswith("done: 10/10 bit steps in 20s\n")
    assert "/step" not in text and "us/" not in text


@pytest.mark.parametrize("terminal", [True, False])
def test_nothing_to_do_is_a_task_of_zero_steps(terminal: bool) -> None:
    p, out, _ = _progress(terminal, interval=0)
    p.start(0, "bit step")
    p.update(0)
    p.finish(message="no data structure can be lowered")
    assert out.getvalue().endswith("done: 0/0 bit steps in 0s; no data structure can be lowered\n")


def test_duration() -> None:
    assert [duration(s) for s in (0.4, 59, 61, 3599, 3725)] == ["0s", "59s", "1m01s", "59m59s", "1h02m"]
