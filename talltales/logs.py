"""Send a job's logging, warnings and progress bars (stderr) to the rule's ``log:`` file.

A progress bar redraws itself in place (carriage returns, terminal escape codes), which in a file is one very
long line. In the log file it becomes a line now and then instead (:class:`ProgressLines`): the first state, one
every ``TALLTALES_PROGRESS_SECONDS`` (default 30) and the last; other output passes unchanged. A child process
(``accelerate launch``) writes to the file directly, its bars as they are.
"""

from __future__ import annotations

import atexit
import io
import logging
import math
import os
import re
import sys
import threading
import time

ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # cursor movement and colours
PROGRESS_SECONDS = 30.0


class ProgressLines(io.TextIOBase):
    """A text stream over ``raw`` that turns in-place redraws (text ended by a carriage return) into whole lines,
    at most one per ``interval`` seconds, the last redraw always kept (it is written when a newline or the end
    follows); escape codes are dropped."""

    def __init__(self, raw, interval: float = PROGRESS_SECONDS, clock=time.monotonic):
        self.raw, self.interval, self.clock = raw, interval, clock
        self._line = ""  # text since the last carriage return or newline
        self._pending = None  # the latest redraw not yet written
        self._redraw = False  # whether the text since the last carriage return is a redraw
        self._last = -math.inf  # when a redraw was last written
        self._lock = threading.Lock()  # threads write whole pieces

    def write(self, text: str) -> int:
        with self._lock:
            clean = ESCAPES.sub("", text).replace("\r\n", "\n")
            if self._redraw and clean and clean[0] not in "\r\n":
                self._redrawn()  # other output while a bar is drawn (a log line): the bar's text ends here
            for piece in re.split(r"(\r|\n)", clean):
                if piece == "\r":
                    self._redrawn()
                    self._redraw = True
                elif piece == "\n":
                    if self._redraw:  # a bar's final state, written in place of any earlier one
                        self._pending = None
                        self._write(self._line)
                    else:
                        self._due()
                        self._write(self._line)
                    self._line, self._redraw = "", False
                else:
                    self._line += piece
        return len(text)

    def _redrawn(self) -> None:
        """The text since the last carriage return was a redraw: the latest state, written if it is time."""
        if self._line.strip():
            self._pending = self._line
            self._due()
        self._line, self._redraw = "", False

    def _due(self) -> None:
        """Write the latest redraw if the last one written is ``interval`` old."""
        if self._pending is not None and self.clock() - self._last >= self.interval:
            self._write(self._pending)
            self._pending, self._last = None, self.clock()

    def _write(self, line: str) -> None:
        self.raw.write(line.rstrip() + "\n")

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        """Write what is left: the text of an unfinished line and the latest redraw not yet written."""
        with self._lock:
            if self._redraw and self._line.strip():
                self._pending, self._line = self._line, ""
            if self._pending is not None:
                self._write(self._pending)
                self._pending = None
            if self._line.strip():
                self._write(self._line)
                self._line = ""
            self.raw.flush()

    def fileno(self) -> int:
        return self.raw.fileno()

    @property
    def buffer(self):  # bytes written here bypass the redraw handling
        return self.raw.buffer

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:
        return getattr(self.raw, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:
        return getattr(self.raw, "errors", None)

    def __getattr__(self, name):  # anything else a stream has (line_buffering, reconfigure, ...): the file's
        if name == "raw":
            raise AttributeError(name)
        return getattr(self.raw, name)


def to_logfile(path: str | None) -> None:
    if path:
        fh = open(path, "a", buffering=1, encoding="utf-8")
        interval = float(os.environ.get("TALLTALES_PROGRESS_SECONDS") or PROGRESS_SECONDS)
        sys.stderr = ProgressLines(fh, interval)
        atexit.register(sys.stderr.close)
        sys.stdout = fh
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.captureWarnings(True)


def start_job(smk) -> None:
    """The preamble of every workflow script: log to the rule's ``log:`` file, then the test hook
    ``TALLTALES_FAULTS`` (talltales.faults), which may fail this job before it does anything."""
    to_logfile(smk.log[0] if len(smk.log) else None)
    from .faults import load_spec, maybe_fail

    maybe_fail(load_spec(), smk.rule, dict(smk.wildcards.items()))
