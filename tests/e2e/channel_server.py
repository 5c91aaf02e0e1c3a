"""Serve a channel directory over HTTP on 127.0.0.1 (stdlib, in a thread), so fetches take the
network path users have with https channels.

    server = ChannelServer(channel_dir).start()   # server.url: http://127.0.0.1:PORT
    server.served                                  # the paths requested, in order
    server.stop(); server.start()                  # down, and up again on the same port
"""
from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path
from typing import Optional


class ChannelServer:
    def __init__(self, directory: Path, port: int = 0):
        self.directory = Path(directory)
        self.port = port
        self.served: list[str] = []
        self._server: Optional[http.server.ThreadingHTTPServer] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ChannelServer":
        served = self.served

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, fmt, *args):
                served.append(self.path)

        handler = functools.partial(Handler, directory=str(self.directory))
        # HTTPServer sets SO_REUSEADDR: a restart gets the same port back
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "ChannelServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
