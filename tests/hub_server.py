"""A local HTTP server on 127.0.0.1 that answers like the Hugging Face Hub and like a release URL.

What huggingface_hub's hf_hub_download and HfApi.model_info ask, and what this answers:
    HEAD/GET /{owner}/{repo}/resolve/{revision}/{path}
        200 with X-Repo-Commit, ETag (git blob sha1 of small files), X-Linked-Etag + X-Linked-Size
        (sha256 and size of "LFS" files), Content-Length, Accept-Ranges; GET honours Range (206).
        Unknown repo/revision/file: 404 with X-Error-Code RepoNotFound / RevisionNotFound / EntryNotFound.
    GET /api/models/{owner}/{repo}/revision/{revision}
        {"id", "sha", "siblings": [{"rfilename"}]}
    HEAD/GET /files/{name}
        a plain release URL: Content-Length, ETag and Last-Modified (which of them: add_file's
        validators), Range -> 206, unless If-Range names another version of the file (then 200).

Faults, injected per URL path for the next N requests: an HTTP status (404, 500), a connection cut
after K body bytes (at once or after a stall), other bytes than the real file, a Range ignored, a
Content-Length larger than the body or none at all, If-Range ignored, an X-Error-Code. Every request
is logged (method, path, Range, If-Range).
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Fault:
    status: int | None = None  # answer with this HTTP status
    cut_after: int | None = None  # send this many body bytes, then drop the connection
    stall_s: float = 0.0  # with cut_after: wait this long before dropping it
    body: bytes | None = None  # serve these bytes instead of the file
    ignore_range: bool = False  # answer a Range request with 200 and the whole file
    extra_length: int = 0  # announce this many bytes more than the body holds, then drop the connection
    no_length: bool = False  # no Content-Length: the body ends when the connection closes
    ignore_if_range: bool = False  # answer a Range request with 206 even when If-Range names another version
    error_code: str | None = None  # with status: the X-Error-Code header (e.g. GatedRepo)
    methods: tuple[str, ...] = ("GET",)
    times: int = 1


@dataclass
class LoggedRequest:
    method: str
    path: str
    range: str | None
    if_range: str | None = None


@dataclass
class _Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)


class FakeHub:
    """Start with ``with FakeHub() as hub:``; ``hub.url`` is the endpoint (HF_ENDPOINT) and release base."""

    def __init__(self) -> None:
        self.repos: dict[str, _Repo] = {}
        self.files: dict[str, bytes] = {}
        self.file_validators: dict[str, tuple[str, ...]] = {}
        self.file_modified: dict[str, str] = {}
        self._added = 0
        self.faults: dict[str, list[Fault]] = {}
        self.log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    # -- content

    def add_commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main") -> str:
        """A new commit holding exactly ``files``; ``branch`` moves to it. Returns its 40-hex id."""
        repo = self.repos.setdefault(repo_id, _Repo())
        digest = hashlib.sha1(repo_id.encode() + str(len(repo.commits)).encode())
        for name in sorted(files):
            digest.update(name.encode() + b"\0" + files[name])
        commit = digest.hexdigest()
        repo.commits[commit] = dict(files)
        repo.branches[branch] = commit
        return commit

    def add_file(self, name: str, data: bytes, validators: tuple[str, ...] = ("etag", "last-modified")) -> str:
        """A release file at ``{url}/files/{name}``; returns its URL.

        ``validators``: what its answers name its version by: "etag" (strong), "weak-etag", "last-modified"
        (a later second with each add_file, so that a replaced file is told apart).
        """
        self.files[name] = data
        self.file_validators[name] = validators
        self._added += 1
        self.file_modified[name] = email.utils.formatdate(1_600_000_000 + self._added, usegmt=True)
        return f"{self.url}/files/{name}"

    def resolve_path(self, repo_id: str, revision: str, filename: str) -> str:
        return f"/{repo_id}/resolve/{revision}/{filename}"

    def inject(self, path: str, fault: Fault) -> None:
        with self._lock:
            self.faults.setdefault(path, []).append(fault)

    def requests_for(self, path: str) -> list[LoggedRequest]:
        return [r for r in self.log if r.path == path]

    # -- lifecycle

    @property
    def url(self) -> str:
        assert self.port is not None, "server not started"
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int = 0) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering: later connections are refused (the port stays known for a restart)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def restart(self) -> None:
        self.start(self.port or 0)

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- used by the handler

    def take_fault(self, path: str, method: str) -> Fault | None:
        with self._lock:
            queue = self.faults.get(path) or []
            for fault in queue:
                if method in fault.methods:
                    fault.times -= 1
                    if fault.times <= 0:
                        queue.remove(fault)
                    return fault
        return None


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_GET(self) -> None:
        self._handle("GET")

    def _handle(self, method: str) -> None:
        path = unquote(urlsplit(self.path).path)
        self.fake.log.append(LoggedRequest(method, path, self.headers.get("Range"), self.headers.get("If-Range")))
        fault = self.fake.take_fault(path, method)
        if fault is not None and fault.status is not None:
            code = {"X-Error-Code": fault.error_code} if fault.error_code else {}
            self._send_status(fault.status, {"X-Error-Message": "injected", **code})
            return
        api = re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/(.+)", path)
        if api:
            self._model_info(api.group(1), api.group(2))
            return
        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if resolve:
            self._resolve(method, resolve.group(1), resolve.group(2), resolve.group(3), fault)
            return
        release = re.fullmatch(r"/files/(.+)", path)
        if release and release.group(1) in self.fake.files:
            name = release.group(1)
            served = fault.body if fault is not None and fault.body is not None else self.fake.files[name]
            self._send_file(method, self.fake.files[name], self._release_validators(name, served), fault)
            return
        self._send_status(404, {})

    def _release_validators(self, name: str, served: bytes) -> dict[str, str]:
        kinds = self.fake.file_validators[name]
        headers: dict[str, str] = {}
        if "etag" in kinds or "weak-etag" in kinds:
            tag = f'"{hashlib.sha256(served).hexdigest()[:16]}"'
            headers["ETag"] = tag if "etag" in kinds else "W/" + tag
        if "last-modified" in kinds:
            headers["Last-Modified"] = self.fake.file_modified[name]
        return headers

    def _lookup(self, repo_id: str, revision: str) -> tuple[_Repo | None, str | None]:
        repo = self.fake.repos.get(repo_id)
        if repo is None:
            return None, None
        commit = revision if revision in repo.commits else repo.branches.get(revision)
        return repo, commit

    def _found(self, repo: object, commit: str | None) -> bool:
        """Answer 404 as the Hub does when the repository or the revision is unknown."""
        if repo is None:
            self._send_status(404, {"X-Error-Code": "RepoNotFound"})
            return False
        if commit is None:
            self._send_status(404, {"X-Error-Code": "RevisionNotFound"})
            return False
        return True

    def _model_info(self, repo_id: str, revision: str) -> None:
        repo, commit = self._lookup(repo_id, revision)
        if not self._found(repo, commit):
            return
        body = json.dumps(
            {
                "id": repo_id,
                "modelId": repo_id,
                "sha": commit,
                "private": False,
                "siblings": [{"rfilename": name} for name in sorted(repo.commits[commit])],
            }
        ).encode()
        self._send_bytes(200, body, {"Content-Type": "application/json"})

    def _resolve(self, method: str, repo_id: str, revision: str, filename: str, fault: Fault | None) -> None:
        repo, commit = self._lookup(repo_id, revision)
        if not self._found(repo, commit):
            return
        data = repo.commits[commit].get(filename)
        if data is None:
            self._send_status(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit})
            return
        headers = {"X-Repo-Commit": commit}
        if filename.endswith(LFS_SUFFIXES):
            # LFS: the ETag the client keeps is the file's sha256, given in X-Linked-Etag.
            sha256 = hashlib.sha256(data).hexdigest()
            headers.update(
                {"ETag": f'"{git_blob_sha1(data)}"', "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(data))}
            )
        else:
            headers["ETag"] = f'"{git_blob_sha1(data)}"'
        self._send_file(method, data, headers, fault)

    def _send_file(self, method: str, data: bytes, headers: dict[str, str], fault: Fault | None) -> None:
        if fault is not None and fault.body is not None:
            data = fault.body
        start = 0
        status = 200
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if_range = self.headers.get("If-Range")
        if if_range is not None and not (fault is not None and fault.ignore_if_range):
            # RFC 9110: the range only for the version named (a strong ETag, or the exact Last-Modified).
            if if_range.startswith("W/") or if_range not in (headers.get("ETag"), headers.get("Last-Modified")):
                match = None
        if match and method == "GET" and not (fault is not None and fault.ignore_range):
            start = int(match.group(1))
            if start >= len(data):
                self._send_status(416, {"Content-Range": f"bytes */{len(data)}"})
                return
            status = 206
            headers = {**headers, "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
        body = data[start:]
        headers = {**headers, "Accept-Ranges": "bytes", "Content-Length": str(len(body))}
        if fault is not None and fault.extra_length:
            headers["Content-Length"] = str(len(body) + fault.extra_length)
        if fault is not None and fault.no_length:
            del headers["Content-Length"]
            headers["Connection"] = "close"
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if method == "HEAD":
            return
        if fault is not None and (fault.cut_after is not None or fault.extra_length or fault.no_length):
            try:
                self.wfile.write(body[: fault.cut_after])
                self.wfile.flush()
                time.sleep(fault.stall_s)
            except OSError:
                pass  # the client gave up first
            self._drop_connection()
            return
        self.wfile.write(body)

    def _drop_connection(self) -> None:
        # Mid-file, as a broken network would.
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send_status(self, status: int, headers: dict[str, str]) -> None:
        self._send_bytes(status, b"", headers)

    def _send_bytes(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
