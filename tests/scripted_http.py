"""A loopback HTTP server that plays a script of answers, for unit tests of the HTTP clients.

Each request gets the next :class:`Answer` (or :data:`DROP`: the connection is closed without a
response, as when a server or proxy dies mid-request), and is recorded as a :class:`Seen`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclasses.dataclass(frozen=True)
class Answer:
    """One scripted response."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"


DROP = None  # close the connection without answering


@dataclasses.dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    authorization: str | None
    body: bytes


@dataclasses.dataclass
class ScriptedServer:
    """Where the server listens and what it has received so far."""

    url: str
    seen: list[Seen]


@contextlib.contextmanager
def scripted_server(answers: Sequence[Answer | None]) -> Iterator[ScriptedServer]:
    """Serve ``answers`` in order on a free loopback port; a request beyond the script gets 599."""
    remaining = list(answers)
    seen: list[Seen] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _play(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                seen.append(Seen(self.command, self.path, self.headers.get("Authorization"), body))
                answer = remaining.pop(0) if remaining else Answer(599, b"beyond the script", "text/plain")
            if answer is DROP:
                self.close_connection = True
                return
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    for method in ("GET", "POST", "PUT", "DELETE"):
        setattr(Handler, f"do_{method}", Handler._play)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield ScriptedServer(f"http://127.0.0.1:{httpd.server_address[1]}", seen)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
