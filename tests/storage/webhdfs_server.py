"""A small WebHDFS-protocol server for tests: HDFS's REST API over a local folder.

No Hadoop NameNode can run on the test machines, so the tests start this server on loopback and
point the real clients at it: the ``hdfs`` package's client (``HDFSStore(driver="webhdfs")``) and
Hadoop's own ``WebHdfsFileSystem`` inside Spark. It implements the operations those clients use,
with HDFS's semantics and wire format (JSON shapes, ``RemoteException`` error bodies and status
codes, the two-step CREATE/APPEND/OPEN through a 307 redirect to a "datanode" URL, which here is
the same server), following the WebHDFS REST API reference:

    GET    GETFILESTATUS, LISTSTATUS, OPEN (offset, length), GETHOMEDIRECTORY,
           GETCONTENTSUMMARY, GETFILEBLOCKLOCATIONS, GETFILECHECKSUM (unsupported: error)
    PUT    MKDIRS, CREATE (overwrite), RENAME, SETPERMISSION, SETTIMES, SETOWNER
    POST   APPEND
    DELETE DELETE (recursive)

It is a test double, not an HDFS: no blocks, leases, replication or security. Two test hooks make
failures real: :meth:`WebHDFSServer.fail_next` makes the next data transfer of an operation fail
midway (a datanode dying during a write), and :attr:`WebHDFSServer.read_only` lists folders
under which every change is refused with ``AccessControlException`` (what HDFS permissions do).
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import stat
import tempfile
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

PREFIX = "/webhdfs/v1"
BLOCK_SIZE = 128 * 1024 * 1024

_JAVA_CLASSES = {
    "FileNotFoundException": "java.io.FileNotFoundException",
    "FileAlreadyExistsException": "org.apache.hadoop.fs.FileAlreadyExistsException",
    "ParentNotDirectoryException": "org.apache.hadoop.fs.ParentNotDirectoryException",
    "PathIsNotEmptyDirectoryException": "org.apache.hadoop.fs.PathIsNotEmptyDirectoryException",
    "AccessControlException": "org.apache.hadoop.security.AccessControlException",
    "IllegalArgumentException": "java.lang.IllegalArgumentException",
    "UnsupportedOperationException": "java.lang.UnsupportedOperationException",
    "IOException": "java.io.IOException",
}
# HDFS's ExceptionHandler: FileNotFoundException -> 404, other IOExceptions -> 403,
# IllegalArgument/UnsupportedOperation -> 400.
_STATUS = {
    "FileNotFoundException": 404,
    "IllegalArgumentException": 400,
    "UnsupportedOperationException": 400,
}


class RemoteError(Exception):
    """An error answered as a WebHDFS ``RemoteException`` JSON body."""

    def __init__(self, exception: str, message: str) -> None:
        super().__init__(message)
        self.exception = exception
        self.message = message


def _bool_param(params: dict[str, str], name: str, default: bool) -> bool:
    value = params.get(name)
    if value is None or value == "":
        return default
    if value.lower() not in ("true", "false"):
        raise RemoteError(
            "IllegalArgumentException",
            f'Invalid value for webhdfs parameter "{name}": Failed to parse "{value}" to Boolean.',
        )
    return value.lower() == "true"


class WebHDFSServer:
    """A WebHDFS endpoint on ``127.0.0.1`` backed by folder ``root``.

    Use as a context manager or call :meth:`start` and :meth:`stop`. :attr:`requests` counts the
    operations served, as ``(method, op)``, so tests can show which protocol parts were used.
    """

    def __init__(self, root: str, *, home_user: str = "root") -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        self.home_user = home_user
        self.requests: Counter[tuple[str, str]] = Counter()
        self.unknown_ops: Counter[str] = Counter()
        self.read_only: set[str] = set()
        self._failures: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> WebHDFSServer:
        handler = type("_BoundHandler", (_Handler,), {"server_state": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits for one poll: keep it short
            name="webhdfs-test-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=10)
            self._httpd = None

    def __enter__(self) -> WebHDFSServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def address(self) -> str:
        """``host:port`` of the NameNode HTTP endpoint (what ``webhdfs://`` URLs carry)."""
        return f"127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ test hooks
    def fail_next(self, op: str, times: int = 1) -> None:
        """Make the next ``times`` data transfers of ``op`` (CREATE, APPEND) fail midway.

        The data request is answered with a 500 after half of its body was written to the file,
        like a datanode failing during a write.
        """
        with self._lock:
            self._failures[op.upper()] += times

    def _take_failure(self, op: str) -> bool:
        with self._lock:
            if self._failures[op] > 0:
                self._failures[op] -= 1
                return True
            return False

    def local_path(self, hdfs_path: str) -> str:
        """The file under :attr:`root` that holds HDFS path ``hdfs_path``."""
        clean = posixpath.normpath("/" + hdfs_path.lstrip("/"))
        return os.path.join(self.root, clean.lstrip("/"))

    # ------------------------------------------------------------------ file status
    def file_status(self, hdfs_path: str, suffix: str) -> dict[str, Any]:
        st = os.stat(self.local_path(hdfs_path))
        is_dir = stat.S_ISDIR(st.st_mode)
        children = len(os.listdir(self.local_path(hdfs_path))) if is_dir else 0
        return {
            "accessTime": 0 if is_dir else int(st.st_atime * 1000),
            "blockSize": 0 if is_dir else BLOCK_SIZE,
            "childrenNum": children,
            "fileId": st.st_ino,
            "group": "supergroup",
            "length": 0 if is_dir else st.st_size,
            "modificationTime": int(st.st_mtime * 1000),
            "owner": self.home_user,
            "pathSuffix": suffix,
            "permission": format(stat.S_IMODE(st.st_mode), "o"),
            "replication": 0 if is_dir else 1,
            "storagePolicy": 0,
            "type": "DIRECTORY" if is_dir else "FILE",
        }


class _Handler(BaseHTTPRequestHandler):
    """One request: parse, dispatch to ``op_<OP>``, answer JSON or a RemoteException."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the real clients expect
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms stalls
    server_state: WebHDFSServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: pytest shows failures, not access logs

    # -------------------------------------------------------------- HTTP plumbing
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _body_chunks(self):
        """Yield the request body, plain or chunked; the body is always consumed entirely."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                yield self.rfile.read(size)
                self.rfile.readline()  # CRLF after each chunk
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk

    def _drain(self) -> None:
        for _ in self._body_chunks():
            pass

    def _send(
        self,
        code: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, code: int = 200) -> None:
        self._send(code, json.dumps(obj).encode())

    def _error(self, err: RemoteError) -> None:
        body = {
            "RemoteException": {
                "exception": err.exception,
                "javaClassName": _JAVA_CLASSES.get(err.exception, "java.io.IOException"),
                "message": err.message,
            }
        }
        self._json(body, _STATUS.get(err.exception, 403))

    def _dispatch(self, method: str) -> None:
        state = self.server_state
        parts = urlsplit(self.path)
        params = {
            k.lower(): v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()
        }
        op = params.get("op", "").upper()
        self.params = params
        self.op = op
        try:
            if not parts.path.startswith(PREFIX):
                self._drain()
                raise RemoteError("IllegalArgumentException", f"Not a WebHDFS URL: {parts.path}")
            raw_path = unquote(parts.path[len(PREFIX) :])
            self.hdfs_path = posixpath.normpath("/" + raw_path.lstrip("/"))
            handler = getattr(self, f"{method}_{op}", None)
            with state._lock:
                state.requests[(method, op)] += 1
            if handler is None:
                with state._lock:
                    state.unknown_ops[f"{method} {op}"] += 1
                self._drain()
                raise RemoteError(
                    "IllegalArgumentException",
                    f'Invalid value for webhdfs parameter "op": '
                    f"No enum constant for {method} {op}",
                )
            handler()
        except RemoteError as err:
            self._error(err)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # -------------------------------------------------------------- helpers
    @property
    def local(self) -> str:
        return self.server_state.local_path(self.hdfs_path)

    def _local_of(self, hdfs_path: str) -> str:
        return self.server_state.local_path(hdfs_path)

    def _not_found(self, hdfs_path: str | None = None) -> RemoteError:
        return RemoteError(
            "FileNotFoundException", f"File does not exist: {hdfs_path or self.hdfs_path}"
        )

    def _check_writable(self, *hdfs_paths: str) -> None:
        for path in hdfs_paths:
            for ro in self.server_state.read_only:
                ro = ro.rstrip("/") or "/"
                if path == ro or path.startswith(ro.rstrip("/") + "/"):
                    raise RemoteError(
                        "AccessControlException",
                        f"Permission denied: user={self.server_state.home_user}, "
                        f'access=WRITE, inode="{ro}":hdfs:supergroup:drwxr-xr-x',
                    )

    def _check_parents(self, hdfs_path: str, create: bool) -> None:
        """Every ancestor must be a folder (ParentNotDirectoryException); create missing ones."""
        current = "/"
        for part in [p for p in posixpath.dirname(hdfs_path).split("/") if p]:
            current = posixpath.join(current, part)
            local = self._local_of(current)
            if os.path.isfile(local):
                raise RemoteError("ParentNotDirectoryException", f"{current} (is not a directory)")
            if not os.path.exists(local):
                if not create:
                    raise self._not_found(current)
                os.makedirs(local, exist_ok=True)

    def _redirect(self) -> None:
        """Answer the NameNode step of a two-step operation: where to send or get the data."""
        query = {k: v for k, v in self.params.items() if k not in ("noredirect",)}
        query["datanode"] = "true"
        location = (
            f"http://{self.server_state.address}{PREFIX}{quote(self.hdfs_path)}?"
            + "&".join(f"{quote(k)}={quote(str(v))}" for k, v in query.items())
        )
        if self.params.get("noredirect", "").lower() == "true":
            self._json({"Location": location})
        else:
            self._send(
                307, headers={"Location": location}, content_type="application/octet-stream"
            )

    def _is_datanode_step(self) -> bool:
        return self.params.get("datanode") == "true"

    def _receive_into(self, local: str, mode: str, op: str) -> None:
        """Write the request body into ``local``; with an injected failure stop halfway."""
        fail = self.server_state._take_failure(op)
        chunks = list(self._body_chunks()) if fail else None
        with open(local, mode) as f:
            if fail:
                data = b"".join(chunks)
                f.write(data[: len(data) // 2])
            else:
                for chunk in self._body_chunks():
                    f.write(chunk)
        if fail:
            raise RemoteError(
                "IOException", f"injected failure: datanode lost while writing {self.hdfs_path}"
            )

    # -------------------------------------------------------------- GET
    def GET_GETFILESTATUS(self) -> None:
        self._drain()
        if not os.path.exists(self.local):
            raise self._not_found()
        self._json({"FileStatus": self.server_state.file_status(self.hdfs_path, "")})

    def GET_LISTSTATUS(self) -> None:
        self._drain()
        if not os.path.exists(self.local):
            raise RemoteError("FileNotFoundException", f"File {self.hdfs_path} does not exist.")
        state = self.server_state
        if os.path.isfile(self.local):
            statuses = [state.file_status(self.hdfs_path, "")]
        else:
            statuses = []
            for name in sorted(os.listdir(self.local)):
                child = posixpath.join(self.hdfs_path, name)
                try:
                    statuses.append(state.file_status(child, name))
                except FileNotFoundError:
                    continue  # removed while listing
        self._json({"FileStatuses": {"FileStatus": statuses}})

    def GET_GETHOMEDIRECTORY(self) -> None:
        self._drain()
        user = self.params.get("user.name") or self.server_state.home_user
        self._json({"Path": f"/user/{user}"})

    def GET_GETCONTENTSUMMARY(self) -> None:
        self._drain()
        if not os.path.exists(self.local):
            raise self._not_found()
        files = dirs = length = 0
        if os.path.isfile(self.local):
            files, length = 1, os.path.getsize(self.local)
        else:
            for root, _dirs, filenames in os.walk(self.local):
                dirs += 1
                files += len(filenames)
                length += sum(os.path.getsize(os.path.join(root, n)) for n in filenames)
        self._json(
            {
                "ContentSummary": {
                    "directoryCount": dirs,
                    "fileCount": files,
                    "length": length,
                    "quota": -1,
                    "spaceConsumed": length,
                    "spaceQuota": -1,
                    "typeQuota": {},
                }
            }
        )

    def GET_GETFILEBLOCKLOCATIONS(self) -> None:
        self._drain()
        if not os.path.isfile(self.local):
            raise self._not_found()
        size = os.path.getsize(self.local)
        offset = int(self.params.get("offset") or 0)
        length = int(self.params.get("length") or size)
        blocks = []
        for start in range(0, max(size, 1), BLOCK_SIZE):
            end = min(start + BLOCK_SIZE, size)
            if size == 0 or end <= offset or start >= offset + length:
                continue
            blocks.append(
                {
                    "cachedHosts": [],
                    "corrupt": False,
                    "hosts": ["127.0.0.1"],
                    "length": end - start,
                    "names": [f"127.0.0.1:{self.server_state.port}"],
                    "offset": start,
                    "storageIds": ["DS-test"],
                    "storageTypes": ["DISK"],
                    "topologyPaths": [f"/default-rack/127.0.0.1:{self.server_state.port}"],
                }
            )
        self._json({"BlockLocations": {"BlockLocation": blocks}})

    def GET_OPEN(self) -> None:
        self._drain()
        if not os.path.exists(self.local):
            raise self._not_found()
        if os.path.isdir(self.local):
            raise RemoteError("FileNotFoundException", f"Path is not a file: {self.hdfs_path}")
        if not self._is_datanode_step():
            self._redirect()
            return
        size = os.path.getsize(self.local)
        offset = int(self.params.get("offset") or 0)
        if offset < 0 or (offset > size and size > 0) or (offset > 0 and size == 0):
            raise RemoteError(
                "IOException",
                f"Offset={offset} out of the range [0, {size}); OPEN, path={self.hdfs_path}",
            )
        length = self.params.get("length")
        end = size if length in (None, "") else min(size, offset + int(length))
        with open(self.local, "rb") as f:
            f.seek(offset)
            data = f.read(max(0, end - offset))
        self._send(200, data, content_type="application/octet-stream")

    # -------------------------------------------------------------- PUT
    def PUT_MKDIRS(self) -> None:
        self._drain()
        self._check_writable(self.hdfs_path)
        self._check_parents(self.hdfs_path, create=True)
        if os.path.isfile(self.local):
            raise RemoteError(
                "FileAlreadyExistsException", f"Path is not a directory: {self.hdfs_path}"
            )
        os.makedirs(self.local, exist_ok=True)
        self._json({"boolean": True})

    def PUT_CREATE(self) -> None:
        if self._is_datanode_step():
            if not os.path.isfile(self.local):
                self._drain()
                raise self._not_found()
            self._receive_into(self.local, "wb", "CREATE")
            self._send(
                201, headers={"Location": f"hdfs://{self.server_state.address}{self.hdfs_path}"}
            )
            return
        self._drain()
        self._check_writable(self.hdfs_path)
        overwrite = _bool_param(self.params, "overwrite", False)
        if os.path.isdir(self.local):
            raise RemoteError(
                "FileAlreadyExistsException", f"{self.hdfs_path} already exists as a directory"
            )
        if os.path.exists(self.local) and not overwrite:
            raise RemoteError(
                "FileAlreadyExistsException",
                f"{self.hdfs_path} for client 127.0.0.1 already exists",
            )
        self._check_parents(self.hdfs_path, create=True)
        # Like the NameNode, create the (empty) file now; the data step fills it.
        with open(self.local, "wb"):
            pass
        self._redirect()

    def PUT_RENAME(self) -> None:
        self._drain()
        dst = self.params.get("destination")
        if not dst or not dst.startswith("/"):
            raise RemoteError(
                "IllegalArgumentException",
                f'Invalid value for webhdfs parameter "destination": {dst}',
            )
        dst = posixpath.normpath(dst)
        self._check_writable(self.hdfs_path, dst)
        self._json({"boolean": self._rename(self.hdfs_path, dst)})

    def _rename(self, src: str, dst: str) -> bool:
        """HDFS's (old) rename: False when impossible; into a folder when ``dst`` is one."""
        src_local = self._local_of(src)
        if src == "/" or not os.path.exists(src_local):
            return False
        if os.path.isdir(self._local_of(dst)):
            dst = posixpath.join(dst, posixpath.basename(src))
        dst_local = self._local_of(dst)
        if dst == src:
            return os.path.isfile(src_local)
        if dst.startswith(src.rstrip("/") + "/"):
            return False  # into its own subtree
        if os.path.exists(dst_local) or not os.path.isdir(os.path.dirname(dst_local)):
            return False
        os.rename(src_local, dst_local)
        return True

    def PUT_SETPERMISSION(self) -> None:
        self._drain()
        if not os.path.exists(self.local):
            raise self._not_found()
        self._check_writable(self.hdfs_path)
        os.chmod(self.local, int(self.params.get("permission") or "755", 8))
        self._send(200)

    def PUT_SETTIMES(self) -> None:
        self._drain()
        if not os.path.exists(self.local):
            raise self._not_found()
        st = os.stat(self.local)
        mtime = int(self.params.get("modificationtime") or -1)
        atime = int(self.params.get("accesstime") or -1)
        os.utime(
            self.local,
            (
                atime / 1000 if atime >= 0 else st.st_atime,
                mtime / 1000 if mtime >= 0 else st.st_mtime,
            ),
        )
        self._send(200)

    def PUT_SETOWNER(self) -> None:
        self._drain()
        if not os.path.exists(self.local):
            raise self._not_found()
        self._send(200)  # owners are not modelled

    # -------------------------------------------------------------- POST
    def POST_APPEND(self) -> None:
        if not os.path.exists(self.local):
            self._drain()
            raise self._not_found()
        if os.path.isdir(self.local):
            self._drain()
            raise RemoteError("FileNotFoundException", f"Path is not a file: {self.hdfs_path}")
        if not self._is_datanode_step():
            self._drain()
            self._check_writable(self.hdfs_path)
            self._redirect()
            return
        self._receive_into(self.local, "ab", "APPEND")
        self._send(200)

    # -------------------------------------------------------------- DELETE
    def DELETE_DELETE(self) -> None:
        self._drain()
        recursive = _bool_param(self.params, "recursive", False)
        if self.hdfs_path == "/" or not os.path.exists(self.local):
            self._json({"boolean": False})
            return
        self._check_writable(self.hdfs_path)
        if os.path.isdir(self.local):
            if os.listdir(self.local) and not recursive:
                raise RemoteError(
                    "PathIsNotEmptyDirectoryException",
                    f"`{self.hdfs_path} is non empty': Directory is not empty",
                )
            shutil.rmtree(self.local)
        else:
            os.remove(self.local)
        self._json({"boolean": True})


if __name__ == "__main__":  # manual use: python tests/storage/webhdfs_server.py
    import time

    with WebHDFSServer(tempfile.mkdtemp(prefix="webhdfs-")) as srv:
        print(f"WebHDFS on http://{srv.address} serving {srv.root}")
        while True:
            time.sleep(3600)
