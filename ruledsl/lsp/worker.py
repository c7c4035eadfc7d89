"""Analyses in a child process: the editor never waits on a slow check, and a stale one can be stopped.

A check is pure Python: its time grows with the document (seconds for 1 MB, see docs/editors.md), and
some inputs take far longer (many misspelt names against many declarations). In a thread it would share the
interpreter lock with the server and could not be interrupted; in a child process it runs beside the
server, and ending the process ends it at once. The server starts one worker and keeps it; it is only
replaced when an analysis is cancelled or the process dies.

Wire format on the child's stdin/stdout: an 8-byte big-endian length, then a pickle. Pickle is safe
here because both ends are this module: the child is our own process reading our own pipe.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from typing import BinaryIO, cast

from ruledsl.lsp.analysis import Analysis

_HEADER = 8


def _write(stream: BinaryIO, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(len(data).to_bytes(_HEADER, "big") + data)
    stream.flush()


def _read(stream: BinaryIO):
    """The next message, or None at end of stream (the other side is gone)."""
    header = stream.read(_HEADER)
    if len(header) < _HEADER:
        return None
    size = int.from_bytes(header, "big")
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)


class CheckWorker:
    """Runs `analyze(text, name)` in a child process, one document at a time.

    `analyze` blocks, so the server calls it from a thread; `cancel` (from any thread) ends the analysis
    in progress, whose `analyze` call then returns None. The next call starts a fresh process.
    """

    def __init__(self, max_diagnostics: int | None = None):
        self.max_diagnostics = max_diagnostics
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()  # one analysis at a time
        self.started = 0  # processes started so far (tests and logs read it)

    def _ensure_process(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "ruledsl.lsp.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            self.started += 1
        return self._process

    def start(self) -> None:
        """Start the process ahead of the first analysis (its imports then overlap the editor's start-up)."""
        with self._lock:
            self._ensure_process()

    def analyze(self, text: str, name: str) -> Analysis | None:
        with self._lock:
            process = self._ensure_process()
            try:  # both pipes exist: the process is started with stdin=PIPE, stdout=PIPE
                _write(cast(BinaryIO, process.stdin), (text, name, self.max_diagnostics))
                result = _read(cast(BinaryIO, process.stdout))
            except (BrokenPipeError, OSError, EOFError, pickle.UnpicklingError):
                result = None
            if result is None:  # cancelled, or the process died: the next call starts a new one
                self._stop(process)
            return result

    def cancel(self) -> None:
        """End the analysis in progress, if any (an idle worker is ended too: it restarts on demand)."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            self._stop(process)

    @staticmethod
    def _stop(process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


def main() -> None:
    """The child: answer analysis requests until stdin closes."""
    from ruledsl.lsp.analysis import analyze

    requests = sys.stdin.buffer
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not corrupt the replies
    while (request := _read(requests)) is not None:
        text, name, max_diagnostics = request
        _write(replies, analyze(text, name, max_diagnostics))


if __name__ == "__main__":
    main()
