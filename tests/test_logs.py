"""A job's log file (talltales.logs): progress bars become a few whole lines, other output passes unchanged."""

from __future__ import annotations

import io
import subprocess
import sys

from tqdm import tqdm

from talltales.logs import ProgressLines


class Clock:
    """Seconds that advance only when the test says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_progress_bar_becomes_its_first_state_one_line_per_interval_and_its_last():
    raw, clock = io.StringIO(), Clock()
    stream = ProgressLines(raw, interval=30, clock=clock)
    print("loading the model", file=stream)
    bar = tqdm(total=100, desc="scoring", file=stream, mininterval=0, miniters=1, ascii=True)
    for i in range(100):
        clock.now += 1  # 1 s per item: 100 s in all
        bar.update(1)
        if i == 49:
            print("a warning in the middle", file=stream)
    bar.close()
    print("done", file=stream)
    text = raw.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines[0] == "loading the model" and lines[-1] == "done"
    bars = [line for line in lines if line.startswith("scoring")]
    assert bars[0].startswith("scoring:   0%") and bars[-1].startswith("scoring: 100%")
    assert 4 <= len(bars) <= 7, bars  # 100 s at one line per 30 s, the first and the last, not 100 redraws
    assert "a warning in the middle" in lines


def test_escape_codes_are_dropped_and_a_cleared_bar_leaves_nothing():
    raw = io.StringIO()
    stream = ProgressLines(raw, interval=0)
    for _ in tqdm(range(3), desc="inner", file=stream, mininterval=0, leave=False, ascii=True):
        pass
    stream.write("\x1b[1mbold\x1b[0m text\n")
    text = raw.getvalue()
    assert "\x1b" not in text and "\r" not in text and text.endswith("bold text\n")
    assert all(line.strip() for line in text.splitlines())  # no blank line where the bar was cleared


def test_log_lines_between_redraws_keep_the_bar_s_periodic_lines_and_its_latest_state():
    """A training loop that logs a line after every step (as the Trainer does): the bar still gets a line once per
    interval, before the log line that follows it, and a crash mid-bar (a traceback) leaves the bar's latest state
    in the log; CRLF line ends are one line end."""
    raw, clock = io.StringIO(), Clock()
    stream = ProgressLines(raw, interval=30, clock=clock)
    bar = tqdm(total=100, desc="train", file=stream, mininterval=0, miniters=1, ascii=True)
    for step in range(1, 71):
        clock.now += 1
        bar.update(1)
        print(f"{{'loss': {step}}}", file=stream)
    stream.write("Traceback (most recent call last):\r\n  boom\r\n")
    stream.close()
    lines = raw.getvalue().splitlines()
    assert "" not in lines and "\r" not in raw.getvalue()
    bars = [line for line in lines if line.startswith("train")]
    assert [b.split("|")[0].split()[-1] for b in bars] == ["0%", "31%", "61%", "70%"], bars  # 0 % at 1 s
    assert lines[-3:-1] == ["Traceback (most recent call last):", "  boom"] and lines[-1].startswith("train:  70%")
    assert sum(line.startswith("{'loss'") for line in lines) == 70


def test_the_last_redraw_is_kept_when_the_job_ends_mid_bar(tmp_path):
    """A job that stops inside a bar (an error) still logs where the bar was: to_logfile writes it at exit."""
    log = tmp_path / "job.log"
    code = (f"import talltales.logs as L; L.to_logfile({str(log)!r}); import sys, tqdm; "
            "b = tqdm.tqdm(total=10, desc='training', mininterval=0, ascii=True); b.update(7); sys.exit(0)")
    subprocess.run([sys.executable, "-c", code], check=True)
    lines = log.read_text().splitlines()
    assert lines and lines[-1].startswith("training:  70%"), lines
