"""A minimal LSP client for tests: `ruledsl lsp` as a subprocess, JSON-RPC over its pipes, as an editor does.

Plain dicts on the wire (camelCase, 0-based UTF-16 positions), so the tests see exactly what an editor
sees. A reader thread collects responses by id and notifications in arrival order.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path


def encode(message: dict) -> bytes:
    body = json.dumps(message).encode("utf-8")
    return f"Content-Length: {len(body)}\r\n\r\n".encode("ascii") + body


class LspClient:
    def __init__(self, *args: str, cwd: Path | None = None):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ruledsl", "lsp", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
        )
        self._next_id = 0
        self._responses: dict[int, dict] = {}
        self.notifications: list[dict] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        self._write_lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    # ---- wire ----------------------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        with self._write_lock:
            self.process.stdin.write(data)
            self.process.stdin.flush()

    def _read(self) -> None:
        stream = self.process.stdout
        while True:
            length = None
            while True:
                line = stream.readline()
                if not line:
                    with self._changed:
                        self._changed.notify_all()
                    return
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode("ascii").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            message = json.loads(stream.read(length))
            if "id" in message and "method" in message:  # a request from the server: answer it
                self.send_raw(encode({"jsonrpc": "2.0", "id": message["id"], "result": None}))
                continue
            with self._changed:
                if "id" in message:
                    self._responses[message["id"]] = message
                else:
                    self.notifications.append(message)
                self._changed.notify_all()

    def _drain_stderr(self) -> None:
        for line in self.process.stderr:
            self.stderr.append(line.decode("utf-8", "replace"))

    def _wait(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = predicate()
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise AssertionError(
                        f"no {what} (server alive: {self.process.poll() is None}); stderr:\n{''.join(self.stderr[-20:])}"
                    )
                self._changed.wait(left)

    # ---- JSON-RPC --------------------------------------------------------------------------------------

    def request_message(self, method: str, params) -> tuple[int, bytes]:
        self._next_id += 1
        return self._next_id, encode({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params})

    def response(self, method: str, params, timeout: float = 30.0) -> dict:
        """The whole response message: `result`, or `error` with its `message`."""
        number, data = self.request_message(method, params)
        self.send_raw(data)
        return self._wait(lambda: self._responses.pop(number, None), timeout, f"response to {method}")

    def request(self, method: str, params, timeout: float = 30.0):
        response = self.response(method, params, timeout)
        if "error" in response:
            raise AssertionError(f"{method} failed: {response['error']}")
        return response.get("result")

    def notify(self, method: str, params) -> None:
        self.send_raw(encode({"jsonrpc": "2.0", "method": method, "params": params}))

    # ---- LSP -------------------------------------------------------------------------------------------

    def initialize(self, capabilities: dict | None = None) -> dict:
        result = self.request("initialize", {"processId": None, "rootUri": None, "capabilities": capabilities or {}})
        self.notify("initialized", {})
        return result

    def open(self, uri: str, text: str, version: int = 1) -> None:
        self.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "ruledsl", "version": version, "text": text}},
        )

    def change_message(self, uri: str, version: int, changes: list[dict]) -> bytes:
        return encode(
            {
                "jsonrpc": "2.0",
                "method": "textDocument/didChange",
                "params": {"textDocument": {"uri": uri, "version": version}, "contentChanges": changes},
            }
        )

    def change(self, uri: str, version: int, changes: list[dict]) -> None:
        self.send_raw(self.change_message(uri, version, changes))

    def published(self, uri: str) -> list[dict]:
        """Every publishDiagnostics for `uri` so far, oldest first."""
        with self._changed:
            return [
                n["params"]
                for n in self.notifications
                if n["method"] == "textDocument/publishDiagnostics" and n["params"]["uri"] == uri
            ]

    def diagnostics(self, uri: str, version: int, timeout: float = 30.0) -> list[dict]:
        """The diagnostics published for this version of the document (waits for them)."""

        def find():
            for n in reversed(self.notifications):
                p = n["params"]
                if n["method"] == "textDocument/publishDiagnostics" and p["uri"] == uri and p.get("version") == version:
                    return p["diagnostics"]
            return None

        return self._wait(find, timeout, f"diagnostics for {uri} version {version}")

    def messages(self, method: str) -> list[str]:
        with self._changed:
            return [n["params"]["message"] for n in self.notifications if n["method"] == method]

    def at(self, uri: str, method: str, line: int, character: int, **extra):
        params = {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}, **extra}
        return self.request(f"textDocument/{method}", params)

    def close(self) -> int:
        if self.process.poll() is None:
            try:
                self.request("shutdown", None, timeout=10)
                self.notify("exit", None)
                return self.process.wait(timeout=10)
            except (AssertionError, OSError, subprocess.TimeoutExpired):
                self.process.kill()
        return self.process.wait()
