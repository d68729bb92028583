"""The review page's local HTTP server: the page, its JSON API, and the folder's images, on 127.0.0.1.

The standard library's ThreadingHTTPServer: one user on the loopback, a dozen routes and no templates,
so a web framework would add packages to every install for routing this file does in a screen; what is
safe to serve has to be decided here in any framework, since the page also shows the manifest's source
images from outside the folder. Every request but the page's static files carries the token the command
prints (Jupyter's model); the Host header must name the loopback (no DNS rebinding); images are served
by item number, never by a path from the request, and every file is resolved and checked to lie under
the folder or to be one of the manifest's own source images.
"""

from __future__ import annotations

import hmac
import json
import mimetypes
import secrets
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from p2d.errors import P2DError, VersionConflict
from p2d.review.thumbs import SIZES, Thumbnails

STATIC = ("index.html", "review.js", "review.css")
MAX_BODY_BYTES = 1 << 20  # edits of thousands of drawings fit many times over
CACHE_DIR = ".p2d_review"  # thumbnails, inside the folder under review


class HTTPError(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def under(base: Path, candidate: Path) -> Path:
    """`candidate` with symlinks resolved, if it is a file under `base`; else a 404 (nothing said about
    what lies outside)."""
    path = candidate.resolve()
    if not path.is_relative_to(base.resolve()) or not path.is_file():
        raise HTTPError(HTTPStatus.NOT_FOUND, "no such file in the folder under review")
    return path


class ReviewApp:
    """What the server knows of one folder: its sections (drawings, photos, duplicates) and the token."""

    def __init__(self, folder: Path | str, token: str | None = None):
        from p2d.review.sections import open_sections

        self.token = token or secrets.token_urlsafe(24)
        self.sections = open_sections(Path(folder).resolve())
        self.folder = self.sections.folder  # an experiment manifest's: the folder it is in
        self.thumbs = Thumbnails(self.folder / CACHE_DIR / "thumbs")

    # ------------------------------------------------------------------------- routing

    def get(self, path: str, query: dict[str, str]) -> tuple[bytes, str]:
        parts = path.strip("/").split("/")
        if parts == [""] or parts == ["index.html"]:
            return _static("index.html")
        if parts[0] == "static" and len(parts) == 2 and parts[1] in STATIC:
            return _static(parts[1])
        if parts == ["api", "state"]:
            return _json({"token_ok": True, **self.sections.state()})
        if parts[0] == "img" and len(parts) == 3:
            return self.image(parts[1], parts[2], query)
        if parts[0] == "file" and len(parts) >= 2:
            file = under(self.folder, self.folder.joinpath(*parts[1:]))
            return file.read_bytes(), mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        raise HTTPError(HTTPStatus.NOT_FOUND, f"no page at /{'/'.join(parts)}")

    def post(self, path: str, body: dict) -> tuple[bytes, str]:
        parts = path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "api":
            raise HTTPError(HTTPStatus.NOT_FOUND, f"no action at {path}")
        return _json(self.sections.act(parts[1], parts[2], body))

    def image(self, kind: str, number: str, query: dict[str, str]) -> tuple[bytes, str]:
        if not number.isdigit():
            raise HTTPError(HTTPStatus.NOT_FOUND, "images are asked for by number")
        try:
            path, base = self.sections.image_path(kind, int(number), query.get("which", ""))
        except KeyError:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"no {kind} image {number}") from None
        file = under(base, path)
        side = int(query["size"]) if query.get("size", "").isdigit() else 0
        if side:
            if side not in SIZES:
                raise HTTPError(HTTPStatus.BAD_REQUEST, f"size must be one of {', '.join(map(str, SIZES))}")
            return self.thumbs.get(file, side), "image/jpeg"
        return file.read_bytes(), mimetypes.guess_type(file.name)[0] or "application/octet-stream"


def _static(name: str) -> tuple[bytes, str]:
    data = resources.files("p2d.review").joinpath("page", name).read_bytes()
    return data, mimetypes.guess_type(name)[0] or "text/plain"


def _json(data) -> tuple[bytes, str]:
    return json.dumps(data, allow_nan=False).encode(), "application/json"


class Handler(BaseHTTPRequestHandler):
    """One request: checks (host, token, body), then the app's routes; every failure is a JSON 4xx."""

    app: ReviewApp
    allowed_hosts: set[str]
    server_version = "p2d-review"

    def log_message(self, format, *args):  # the terminal shows the URL and the actions, not every image
        pass

    def do_GET(self):
        self._serve(lambda path, query: self.app.get(path, query))

    def do_POST(self):
        self._serve(lambda path, query: self.app.post(path, self._body()))

    def _serve(self, route) -> None:
        try:
            path, query = self._check()
            data, ctype = route(path, query)
            self._send(HTTPStatus.OK, data, ctype)
        except HTTPError as exc:
            self._error(exc.status, str(exc))
        except VersionConflict as exc:
            self._error(HTTPStatus.CONFLICT, str(exc))
        except P2DError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # the server keeps running; the page shows what broke
            traceback.print_exc()
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")

    def _check(self) -> tuple[str, dict[str, str]]:
        host = (self.headers.get("Host") or "").lower()
        if host not in self.allowed_hosts:
            raise HTTPError(HTTPStatus.FORBIDDEN, f"Host {host!r} is not this server's: open the printed URL")
        url = urlsplit(self.path)
        path = unquote(url.path)
        if "\\" in path or "\0" in path or any(p in ("..", ".") for p in path.split("/")) or "//" in path:
            raise HTTPError(HTTPStatus.BAD_REQUEST, "paths with '..', '.', '//' or '\\' are not served")
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        static = path in ("/static/review.js", "/static/review.css")
        token = self.headers.get("X-P2D-Token") or query.get("token", "")
        if not static and not hmac.compare_digest(token.encode(), self.app.token.encode()):
            raise HTTPError(HTTPStatus.FORBIDDEN, "a token is needed: open the URL `p2d review` printed "
                                                  "(it ends with ?token=...)")
        return path, query

    def _body(self) -> dict:
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            raise HTTPError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send JSON (Content-Type: application/json)")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise HTTPError(HTTPStatus.BAD_REQUEST, "Content-Length is not a number") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            f"a request body is at most {MAX_BODY_BYTES} bytes")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise HTTPError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
        return body

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send(status, json.dumps({"error": message}).encode(), "application/json")

    def _send(self, status: HTTPStatus, data: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control",
                         "no-store" if ctype == "application/json" else "private, max-age=3600")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:")
        self.end_headers()
        self.wfile.write(data)


def make_server(app: ReviewApp, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server for `app` on host:port (0: a free port), not yet serving."""
    server = ThreadingHTTPServer((host, port), type("ReviewHandler", (Handler,), {}))
    real = server.server_address[1]
    names = {host, "127.0.0.1", "localhost"} | ({"[::1]"} if host == "::1" else set())
    server.RequestHandlerClass.app = app
    server.RequestHandlerClass.allowed_hosts = {f"{n}:{real}" for n in names}
    server.daemon_threads = True
    return server


def url_of(server: ThreadingHTTPServer, app: ReviewApp) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/?token={app.token}"


def serve_in_thread(app: ReviewApp, port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Start serving in a background thread (tests, benchmarks); stop with server.shutdown()."""
    server = make_server(app, port=port)
    # a short poll: shutdown() waits up to one interval (tests start and stop dozens of servers)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, url_of(server, app)
