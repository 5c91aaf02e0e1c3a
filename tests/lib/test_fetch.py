import hashlib

import pytest

from coex.lib.errors import CoexError
from coex.lib.fetch import fetch


@pytest.fixture
def pkg(tiny_channel):
    path = tiny_channel.file("prefixprog")
    data = path.read_bytes()
    return path, hashlib.sha256(data).hexdigest(), len(data)


@pytest.mark.parametrize("form", ["uri", "file:/abs", "localhost", "path"])
def test_good_fetch_in_every_url_form(pkg, tmp_path, form):
    path, sha, size = pkg
    url = {"uri": path.as_uri(), "file:/abs": "file:" + str(path),
           "localhost": "file://localhost" + str(path), "path": str(path)}[form]
    out = tmp_path / "sub" / path.name
    assert fetch(url, sha, size, out) == str(out)
    assert out.read_bytes() == path.read_bytes()
    assert list(out.parent.iterdir()) == [out]            # no temp files left


def test_wrong_sha_names_package_and_both_digests(pkg, tmp_path):
    path, sha, size = pkg
    wrong = "0" * 64
    with pytest.raises(CoexError) as e:
        fetch(path.as_uri(), wrong, size, tmp_path / "x")
    msg = str(e.value)
    assert path.name in msg and sha in msg and wrong in msg
    assert "regenerate the lockfile" in msg
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("delta", [-1, 1])
def test_wrong_size(pkg, tmp_path, delta):
    path, sha, size = pkg
    with pytest.raises(CoexError) as e:
        fetch(path.as_uri(), sha, size + delta, tmp_path / "x")
    assert path.name in str(e.value) and str(size + delta) in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_missing_file(tmp_path):
    with pytest.raises(CoexError) as e:
        fetch((tmp_path / "gone-1.0-0.conda").as_uri(), "a" * 64, 10, tmp_path / "out" / "x",
              name="gone-1.0-0.conda")
    assert "Cannot fetch package gone-1.0-0.conda" in str(e.value)
    assert "does not exist" in str(e.value)
    assert not (tmp_path / "out" / "x").exists()


def test_existing_output_untouched_on_failure(pkg, tmp_path):
    path, sha, size = pkg
    out = tmp_path / "x"
    out.write_bytes(b"previous")
    with pytest.raises(CoexError):
        fetch(path.as_uri(), "f" * 64, size, out)
    assert out.read_bytes() == b"previous"


def test_bad_inputs(tmp_path):
    with pytest.raises(CoexError, match="not 64 hex digits"):
        fetch("file:///x", "abc", 1, tmp_path / "x")
    with pytest.raises(CoexError, match="unsupported URL scheme"):
        fetch("ftp://host/x.conda", "a" * 64, 1, tmp_path / "x")


def test_https_path_via_local_http_server(pkg, tmp_path):
    """The http(s) code path (urllib, streaming verify) against a local server."""
    import functools
    import http.server
    import threading

    path, sha, size = pkg
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(path.parent))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        base = "http://127.0.0.1:%d/" % srv.server_address[1]
        out = tmp_path / path.name
        fetch(base + path.name, sha, size, out)
        assert out.read_bytes() == path.read_bytes()
        with pytest.raises(CoexError, match="HTTP 404"):
            fetch(base + "missing-1-0.conda", sha, size, tmp_path / "m")
        with pytest.raises(CoexError, match="failed verification"):
            fetch(base + path.name, "e" * 64, size, tmp_path / "w")
        assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    finally:
        srv.shutdown()


class FlakyServer:
    """An HTTP server for one file whose first `failures` responses are `mode`: "503", "short"
    (the body cut off after half the bytes), or "length" (a wrong Content-Length, every time)."""

    def __init__(self, data: bytes, mode: str, failures: int = 1):
        import http.server
        import threading

        self.requests = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                server.requests += 1
                bad = server.requests <= failures
                if bad and mode == "503":
                    self.send_error(503, "busy")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data) + (mode == "length")))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2] if bad and mode == "short" else data)

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d/pkg-1-0.conda" % self.srv.server_address[1]

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.mark.parametrize("mode", ["503", "short"])
def test_network_failures_are_retried(pkg, tmp_path, mode):
    path, sha, size = pkg
    server = FlakyServer(path.read_bytes(), mode)
    try:
        fetch(server.url, sha, size, tmp_path / "x")
    finally:
        server.close()
    assert server.requests == 2 and (tmp_path / "x").read_bytes() == path.read_bytes()


def test_persistent_failure_names_package_url_and_attempts(pkg, tmp_path):
    path, sha, size = pkg
    server = FlakyServer(path.read_bytes(), "503", failures=10)
    try:
        with pytest.raises(CoexError) as e:
            fetch(server.url, sha, size, tmp_path / "x", name="pkg-1-0.conda")
    finally:
        server.close()
    assert server.requests == 3
    msg = str(e.value)
    assert "pkg-1-0.conda" in msg and server.url in msg and "HTTP 503" in msg
    assert "after 3 attempts" in msg and list(tmp_path.iterdir()) == []


def test_a_wrong_content_length_is_not_retried(pkg, tmp_path):
    path, sha, size = pkg
    server = FlakyServer(path.read_bytes(), "length", failures=10)
    try:
        with pytest.raises(CoexError, match="Content-Length.*Regenerate the lockfile"):
            fetch(server.url, sha, size, tmp_path / "x")
    finally:
        server.close()
    assert server.requests == 1
