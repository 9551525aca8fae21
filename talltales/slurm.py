"""Slurm: cancel what an interrupted or failed run leaves in the queue.

The Slurm executor plugin (2.8.0) names every job of a run after the run's ID (``--job-name``) and logs that ID
("SLURM run ID: ...") when it starts, before the workflow's ``onstart`` handler runs. On its own it does not
cancel reliably on an interrupt (Ctrl-C, SIGINT):

* it cancels only the jobs in its list of active jobs, and a job can be missing from that list at that moment:
  the list is emptied while a status query runs and refilled after it, and a submission is registered only
  after sbatch has returned;
* Snakemake runs the workflow's ``onerror`` handler only after the plugin's shutdown, which waits until its
  status thread wakes up from its sleep between two queries: 10 s longer after each query that finds no job
  finished, up to 180 s. A second interrupt in that time, or a ``kill``, ends Snakemake without ``onerror``;
* Snakemake's console log handler discards a KeyboardInterrupt raised while it writes a line: an interrupt that
  lands then is lost and the run goes on;
* Python runs a signal handler in the main thread only, and a process-directed SIGINT (``kill``, Ctrl-C) can be
  delivered by the kernel to any thread. While jobs are queued, Snakemake's main thread waits in a lock acquire
  (``JobScheduler.schedule``) that only a finished job or a signal delivered to that thread ends: a SIGINT that
  the kernel gives to the plugin's status thread is never acted on, and the run goes on (a 2-node test job that
  stays pending showed it: the main thread still waiting minutes after the SIGINT, no signal pending).

So ``onstart`` installs :func:`cancel_on_interrupt`: a SIGINT cancels, by that name, every job of the run at once
(Snakemake cancels all its jobs on an interrupt anyway), then Snakemake handles the interrupt as before; one that
lands while a log handler writes is delivered again just after, and one that lands in another thread is relayed to
the main thread (through :func:`signal.set_wakeup_fd`, which the C-level handler writes to in whatever thread
got the signal). ``onerror`` keeps :func:`cancel_run` as the
backstop for a submission that was in flight at the interrupt, and for a run that stops on an error. SIGTERM is
left alone: there Snakemake lets running jobs finish. (tests/slurm/FINDINGS.md has the measurements.)
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterable

log = logging.getLogger(__name__)

RUN_ID = re.compile(r"SLURM run ID: (\S+)")
SCANCEL_TIMEOUT = 60  # seconds; the plugin's own scancel waits as long
REDELIVER_AFTER = 0.2  # seconds: an interrupt that landed in a log handler's emit is sent again
RELAY_AFTER = 0.25  # seconds: an interrupt whose handler has not run by then is sent to the main thread
DUPLICATE_WITHIN = 1.0  # seconds: an interrupt this soon after one was passed on is the relay's duplicate

Logfiles = str | Path | Iterable[str | Path] | None


def run_id(logfiles: Logfiles) -> str | None:
    """The Slurm run ID the executor plugin logged in Snakemake's log file(s) (the ``log`` of an ``onstart`` or
    ``onerror`` handler: a path, or a list of them), or None (not a Slurm run)."""
    if isinstance(logfiles, (str, Path)):
        logfiles = [logfiles]
    for path in logfiles or []:
        if Path(path).is_file() and (m := RUN_ID.search(Path(path).read_text(errors="replace"))):
            return m.group(1)
    return None


def _scancel(rid: str) -> tuple[int, str]:
    """``scancel --name=rid``; what to log about it (level, message). Logs nothing itself (see on_sigint)."""
    try:
        proc = subprocess.run(["scancel", f"--name={rid}"], capture_output=True, text=True, timeout=SCANCEL_TIMEOUT)
    except subprocess.TimeoutExpired:
        return logging.WARNING, f"scancel --name={rid} did not return within {SCANCEL_TIMEOUT} s"
    if proc.returncode != 0:
        return logging.WARNING, f"scancel --name={rid} failed ({proc.returncode}): {proc.stderr.strip()}"
    return logging.INFO, f"Cancelled any job of Slurm run {rid} still queued or running."


def _slurm_run(logfiles: Logfiles) -> str | None:
    rid = run_id(logfiles)
    return rid if rid is not None and shutil.which("scancel") is not None else None


def cancel_run(logfiles: Logfiles, logger: logging.Logger | None = None) -> str | None:
    """``scancel --name`` the jobs of the Slurm run logged in ``logfiles``; the run ID, or None if there was none."""
    rid = _slurm_run(logfiles)
    if rid is not None:
        (logger or log).log(*_scancel(rid))
    return rid


def _in_log_emit(frame) -> bool:
    """Whether ``frame`` runs inside a logging handler's ``emit`` (where Snakemake swallows KeyboardInterrupt)."""
    while frame is not None:
        if frame.f_code.co_name == "emit" and isinstance(frame.f_locals.get("self"), logging.Handler):
            return True
        frame = frame.f_back
    return False


def _relay_to_main_thread(read_fd: int, handled_at: list[float], main_ident: int) -> None:
    """Read the signal numbers Python's C-level handler writes to the wakeup fd; for a SIGINT whose Python handler
    has not run ``RELAY_AFTER`` seconds later (it landed in a thread other than the main one, which may wait in a
    lock acquire that nothing else ends), send SIGINT to the main thread itself. Runs in a daemon thread."""
    while True:
        try:
            data = os.read(read_fd, 512)
        except OSError:
            return
        if not data:
            return
        if int(signal.SIGINT) not in data:
            continue
        seen = time.monotonic()
        time.sleep(RELAY_AFTER)
        if handled_at[0] < seen - 0.05:
            signal.pthread_kill(main_ident, signal.SIGINT)


def _start_relay(handled_at: list[float], logger: logging.Logger) -> None:
    """Make Python's C-level handler write every signal number to a pipe (:func:`signal.set_wakeup_fd`) that
    :func:`_relay_to_main_thread` reads. Leaves an existing wakeup fd (e.g. an asyncio loop's) alone."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    old = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    if old != -1:
        signal.set_wakeup_fd(old)
        os.close(read_fd)
        os.close(write_fd)
        logger.debug("a signal wakeup fd is already set: an interrupt is not relayed to the main thread")
        return
    threading.Thread(target=_relay_to_main_thread, args=(read_fd, handled_at, threading.main_thread().ident),
                     name="talltales-sigint-relay", daemon=True).start()


def cancel_on_interrupt(logfiles: Logfiles, logger: logging.Logger | None = None) -> str | None:
    """From now on a SIGINT first cancels the jobs of the Slurm run logged in ``logfiles``, then goes to the
    handler that was there before (Python's: KeyboardInterrupt). One that lands in a log handler's ``emit``
    cancels but logs nothing there (logging from there could deadlock) and is sent again shortly, until it lands
    outside, where the messages are logged and the previous handler gets it. The jobs are cancelled once. A SIGINT
    the kernel delivers to another thread is relayed to the main thread (:func:`_relay_to_main_thread`); a second
    one within ``DUPLICATE_WITHIN`` seconds of one passed on is dropped (the relay's duplicate). The run ID, or None
    (not a Slurm run, or not the main thread, the only one that can set a signal handler: nothing installed)."""
    rid = _slurm_run(logfiles)
    if rid is None:
        return None
    logger = logger or log
    previous = signal.getsignal(signal.SIGINT)
    busy = cancelled = False
    unlogged: list[tuple[int, str]] = []
    handled_at = [float("-inf")]  # when on_sigint last ran (read by the relay thread)
    passed_at = [float("-inf")]  # when it last passed an interrupt on to the previous handler
    main_ident = threading.main_thread().ident

    def on_sigint(signum, frame):
        nonlocal busy, cancelled
        now = handled_at[0] = time.monotonic()
        if now - passed_at[0] < DUPLICATE_WITHIN:  # the relay's copy of an interrupt already passed on
            return
        if busy:  # a second interrupt while scancel runs: the first one goes on to the previous handler
            return
        if not cancelled:
            busy = True
            try:
                unlogged.append((logging.INFO, f"Interrupted: cancelling the jobs of Slurm run {rid}."))
                unlogged.append(_scancel(rid))
            finally:
                busy, cancelled = False, True
        if _in_log_emit(frame):
            # Snakemake's console handler writes under a non-reentrant lock and discards a KeyboardInterrupt, so
            # here the jobs are cancelled but nothing is logged (that would wait for the lock forever) and the
            # interrupt is sent again shortly, until it lands outside a handler.
            threading.Timer(REDELIVER_AFTER, signal.pthread_kill, (main_ident, signal.SIGINT)).start()
            return
        while unlogged:
            logger.log(*unlogged.pop(0))
        passed_at[0] = time.monotonic()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.raise_signal(signal.SIGINT)
        elif previous != signal.SIG_IGN:  # None: a handler not set from Python
            raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread
        logger.warning("not in the main thread: an interrupt will cancel this run's Slurm jobs only at its end")
        return None
    _start_relay(handled_at, logger)
    return rid


__all__ = ["cancel_on_interrupt", "cancel_run", "run_id"]
