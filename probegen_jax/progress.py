"""Progress of long work: a bar on a terminal (or in a notebook), one line per finished stage
anywhere else (and, for long stages, one line a minute while they run).

A bar redraws itself with carriage returns, which fill a log file or a pipe (CI logs,
``make demo > log``) with frames. Written anywhere but a terminal, each stage instead prints one
line when it ends: what it was, how far it got, how long it took and its last figures::

    probegen: 30/30 epochs in 12.4s (loss=0.0812, accuracy=0.9100)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm.auto import tqdm
from tqdm.autonotebook import tqdm as autonotebook_tqdm


def on_terminal(stream: TextIO) -> bool:
    """Whether a bar drawn on ``stream`` is seen as one: a terminal, or a notebook's own bars."""
    if autonotebook_tqdm.__module__ == "tqdm.notebook":  # what tqdm.auto picked in a notebook
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             initial: int = 0, disable: bool = False, file: TextIO | None = None, **bar_options: Any) -> Any:
    """A tqdm bar where it is drawn on a terminal, else a ``StageLine`` with the same use
    (iterate, ``update``, ``set_postfix``, ``close``, ``with``); ``bar_options`` go to tqdm."""
    if disable or on_terminal(file or sys.stderr):
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable, file=file,
                    **bar_options)
    return StageLine(iterable, total=total, desc=desc, unit=unit, initial=initial, file=file)


class StageLine:
    """Progress written as one line when the stage ends (``close``, the end of iteration, or the
    end of a ``with`` block), and while it runs at most one line every ``every`` seconds (an
    hour-long zoo generation in a log shows it is alive); a stage ended by an error writes no
    end line (the error says what happened)."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", initial: int = 0, file: TextIO | None = None, every: float = 60.0):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = initial + len(iterable)
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = initial
        self.file = file
        self.postfix: dict[str, Any] = {}
        self.closed = False
        self.every = every
        self._started = self._last_line = time.perf_counter()

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def __enter__(self) -> StageLine:
        return self

    def __exit__(self, error: type[BaseException] | None, *_: Any) -> None:
        if error is None:
            self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self._last_line >= self.every and not (self.total is not None and self.n >= self.total):
            self._last_line = now
            print(self.line(ended=False), file=self.file or sys.stderr, flush=True)

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **figures: Any) -> None:
        self.postfix = {**(ordered_dict or {}), **figures}

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        """Nothing to redraw: the line is written at the end."""

    @staticmethod
    def write(text: str, file: TextIO | None = None) -> None:
        print(text, file=file or sys.stdout)

    def line(self, *, ended: bool = True) -> str:
        """The stage's line: ``desc: n/total units in 1.2s (figures)``; while it runs
        (``ended=False``), ``desc: n/total units after 60.0s (figures)``."""
        done = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        units = self.unit if (self.total if self.total is not None else self.n) == 1 else f"{self.unit}s"
        seconds = time.perf_counter() - self._started
        stopped = "" if not ended or self.total is None or self.n >= self.total else "stopped at "
        figures = f" ({', '.join(f'{k}={v}' for k, v in self.postfix.items())})" if self.postfix else ""
        when = "in" if ended else "after"
        return f"{self.desc + ': ' if self.desc else ''}{stopped}{done} {units} {when} {seconds:.1f}s{figures}"

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            print(self.line(), file=self.file or sys.stderr, flush=True)
