"""HDFSStore: a store on HDFS, through libhdfs or WebHDFS.

Two drivers reach the same HDFS:

* ``driver="libhdfs"`` (default): ``pyarrow.fs.HadoopFileSystem``, Hadoop's native client. It
  needs a Hadoop installation on every machine that opens the store (``HADOOP_HOME``,
  ``JAVA_HOME``, ``libhdfs.so`` and the Hadoop jars on ``CLASSPATH``), which Hadoop/YARN
  clusters have. URLs are ``hdfs://namenode:8020/...``.
* ``driver="webhdfs"``: the NameNode's REST API through the ``hdfs`` package, wrapped as a
  ``pyarrow.fs.PyFileSystem`` (see :mod:`cerebro.storage._webhdfs`). It needs only HTTP access
  to the NameNode and DataNodes. URLs are ``webhdfs://namenode:9870/...``, which Spark's
  bundled Hadoop client also reads and writes.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import posixpath
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from cerebro.exceptions import CerebroTypeError, CerebroValueError, StoreError
from cerebro.storage._base import Store

logger = logging.getLogger(__name__)

DRIVERS = ("libhdfs", "webhdfs")
#: URL scheme of each driver.
SCHEME = {"libhdfs": "hdfs", "webhdfs": "webhdfs"}
#: NameNode port when none is given: RPC for libhdfs, HTTP (Hadoop 3) for WebHDFS.
DEFAULT_PORT = {"libhdfs": 8020, "webhdfs": 9870}
#: libhdfs host meaning "fs.defaultFS of the Hadoop configuration".
DEFAULT_NAMENODE = "default"


class HDFSStore(Store):
    """A store under a folder on HDFS, e.g. ``HDFSStore("hdfs://namenode:8020/user/me/exp")``.

    Args:
        prefix_path: ``hdfs://host:port/path`` (libhdfs), ``webhdfs://host:port/path`` (WebHDFS),
            or an absolute path ``/path`` on the NameNode given by ``host``/``port``. For libhdfs
            without a host, ``hdfs:///path`` or ``/path`` uses ``fs.defaultFS`` of the Hadoop
            configuration.
        host: NameNode host, if ``prefix_path`` does not name one.
        port: NameNode port (default 8020 for libhdfs, 9870 for WebHDFS).
        user: HDFS user to act as; ``None`` means the login user.
        kerb_ticket: path of a Kerberos ticket cache. With WebHDFS it needs the
            ``requests-kerberos`` package and is made the process's ``KRB5CCNAME``.
        driver: ``"libhdfs"`` or ``"webhdfs"`` (see the module docstring).
        train_path, val_path, runs_path, logs_path: overrides of the sub-paths
            (see :class:`~cerebro.storage.Store`), as absolute paths or URLs on the same
            NameNode.
        extra_conf: Hadoop configuration overrides for libhdfs (``{"dfs.replication": "2"}``).

    Raises:
        CerebroValueError: a bad argument (driver, port, relative path, scheme or NameNode that
            does not match...).
        CerebroTypeError: an argument of the wrong type.
    """

    schemes = ("hdfs", "webhdfs")

    def __init__(
        self,
        prefix_path: str,
        *,
        host: str | None = None,
        port: int | None = None,
        user: str | None = None,
        kerb_ticket: str | os.PathLike[str] | None = None,
        driver: str = "libhdfs",
        train_path: str | None = None,
        val_path: str | None = None,
        runs_path: str | None = None,
        logs_path: str | None = None,
        extra_conf: dict[str, str] | None = None,
    ) -> None:
        if driver not in DRIVERS:
            raise CerebroValueError(f"driver must be one of {DRIVERS}, got {driver!r}")
        if host is not None and (not isinstance(host, str) or not _valid_host(host)):
            raise CerebroValueError(
                f"host must be a NameNode host name or address (no scheme, port or path), "
                f"got {host!r}"
            )
        if port is not None:
            _check_port(port, "port")
        if user is not None and (not isinstance(user, str) or not user.strip()):
            raise CerebroValueError(f"user must be a non-empty string or None, got {user!r}")
        if kerb_ticket is not None:
            if not isinstance(kerb_ticket, str | os.PathLike) or not os.fspath(kerb_ticket):
                raise CerebroValueError(
                    f"kerb_ticket must be the path of a Kerberos ticket cache, got {kerb_ticket!r}"
                )
            kerb_ticket = os.fspath(kerb_ticket)
        if extra_conf is not None:
            if driver != "libhdfs":
                raise CerebroValueError(
                    f"extra_conf is Hadoop configuration for driver='libhdfs'; "
                    f"driver={driver!r} does not take it, got extra_conf={extra_conf!r}"
                )
            if not isinstance(extra_conf, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in extra_conf.items()
            ):
                raise CerebroTypeError(
                    f"extra_conf must be a dict of str to str, got {extra_conf!r}"
                )
        if driver == "webhdfs" and kerb_ticket is not None and user is not None:
            raise CerebroValueError(
                f"user cannot be combined with kerb_ticket for driver='webhdfs': the Kerberos "
                f"principal of the ticket is the user, got user={user!r}"
            )
        self.driver = driver
        self.scheme = SCHEME[driver]
        self.user = user
        self.kerb_ticket = kerb_ticket
        self.extra_conf = dict(extra_conf) if extra_conf is not None else None
        self.host, self.port = self._namenode(prefix_path, host, port)
        super().__init__(
            prefix_path,
            train_path=train_path,
            val_path=val_path,
            runs_path=runs_path,
            logs_path=logs_path,
        )

    # ------------------------------------------------------------------ URLs
    def _namenode(self, prefix_path: Any, host: str | None, port: int | None) -> tuple[str, int]:
        """The NameNode ``(host, port)`` from ``prefix_path`` and the ``host``/``port`` args."""
        if not isinstance(prefix_path, str) or not prefix_path.strip():
            raise CerebroValueError(
                f"prefix_path must be a non-empty path or URL, got {prefix_path!r}"
            )
        url_host, url_port, _path = self._split(prefix_path, "prefix_path")
        if url_host is not None and host is not None and url_host != host.lower():
            raise CerebroValueError(
                f"host={host!r} does not match the NameNode of prefix_path {prefix_path!r}"
            )
        if url_port is not None and port is not None and url_port != port:
            raise CerebroValueError(
                f"port={port!r} does not match the NameNode port of prefix_path {prefix_path!r}"
            )
        if url_host is None and host is not None and host.lower() == DEFAULT_NAMENODE:
            host = None  # libhdfs's name for fs.defaultFS, not a host called "default"
        host = url_host if url_host is not None else host
        port = url_port if url_port is not None else port
        if host is None:
            if self.driver == "webhdfs":
                raise CerebroValueError(
                    "driver='webhdfs' needs the NameNode: give prefix_path as "
                    f"webhdfs://host:port/path or pass host=, got prefix_path={prefix_path!r}"
                )
            if port is not None:
                raise CerebroValueError(
                    f"port={port!r} needs a host; without one, libhdfs uses fs.defaultFS "
                    "and its port"
                )
            return DEFAULT_NAMENODE, 0
        return host.lower(), port if port is not None else DEFAULT_PORT[self.driver]

    def _split(self, path: str, arg_name: str) -> tuple[str | None, int | None, str]:
        """Check a URL or absolute path; return its host and port (or ``None``) and path."""
        try:
            parts = urlsplit(path)
            url_port = parts.port
        except ValueError as e:
            raise CerebroValueError(f"{arg_name} is not a valid URL ({e}), got {path!r}") from e
        if parts.scheme and parts.scheme not in self.schemes:
            raise CerebroValueError(
                f"{arg_name} of an HDFSStore must be an hdfs:// or webhdfs:// URL or an "
                f"absolute path, got {path!r}"
            )
        if parts.scheme and parts.scheme != self.scheme:
            wanted = next(d for d, s in SCHEME.items() if s == parts.scheme)
            raise CerebroValueError(
                f"{arg_name} {path!r} is a {parts.scheme}:// URL, which needs "
                f"driver={wanted!r}; with driver={self.driver!r} use {self.scheme}:// URLs"
            )
        if parts.query or parts.fragment or "?" in path or "#" in path:
            raise CerebroValueError(
                f"{arg_name} must not contain '?' or '#' (query or fragment), got {path!r}"
            )
        if parts.username is not None or parts.password is not None:
            raise CerebroValueError(
                f"{arg_name} must not carry a user in the URL (pass user=), got {path!r}"
            )
        if parts.netloc and not parts.scheme:
            raise CerebroValueError(
                f"{arg_name} starting with '//' reads as a URL without a scheme: write an "
                f"absolute path with one '/' or a full hdfs:// or webhdfs:// URL, got {path!r}"
            )
        fs_path = parts.path or ("/" if parts.scheme else "")  # hdfs://nn:8020 is the root
        if not fs_path.startswith("/"):
            raise CerebroValueError(
                f"{arg_name} must be an absolute path (starting with '/') or a URL with one, "
                f"got {path!r}"
            )
        if url_port is not None:
            _check_port(url_port, f"the port in {arg_name}")
        host = parts.hostname if parts.netloc else None
        if parts.netloc and not host:
            raise CerebroValueError(f"{arg_name} has a port but no host, got {path!r}")
        return host, url_port, fs_path

    def _authority(self) -> str:
        if self.host == DEFAULT_NAMENODE and self.port == 0:
            return ""  # hdfs:///path: the default file system of the Hadoop configuration
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def _normalize(self, path: str, arg_name: str) -> str:
        if not isinstance(path, str) or not path.strip():
            raise CerebroValueError(f"{arg_name} must be a non-empty path or URL, got {path!r}")
        host, port, fs_path = self._split(path, arg_name)
        if host is not None:
            port = port if port is not None else DEFAULT_PORT[self.driver]
            if (host, port) != (self.host, self.port):
                raise CerebroValueError(
                    f"{arg_name} must be on the store's NameNode {self._authority()}, got {path!r}"
                )
        elif urlsplit(path).scheme and self._authority():
            # hdfs:///path means fs.defaultFS: only for a store on the default NameNode
            raise CerebroValueError(
                f"{arg_name} must name the store's NameNode {self._authority()} or be a plain "
                f"absolute path, got {path!r}"
            )
        fs_path = posixpath.normpath(fs_path)
        fs_path = "/" + fs_path.lstrip("/")  # normpath keeps a leading '//'
        return f"{self.scheme}://{self._authority()}{fs_path.rstrip('/')}"

    def to_fs_path(self, url: str) -> str:
        """Map a URL of this store (or an absolute path) to the path on :attr:`filesystem`."""
        if not isinstance(url, str):
            raise CerebroTypeError(f"url must be a string, got {url!r}")
        return urlsplit(self._normalize(url, "url")).path or "/"

    # ------------------------------------------------------------------ filesystem
    def _make_filesystem(self) -> pafs.FileSystem:
        if self.driver == "webhdfs":
            return self._make_webhdfs()
        return self._make_libhdfs()

    def _make_libhdfs(self) -> pafs.FileSystem:
        try:
            return pafs.HadoopFileSystem(
                self.host,
                self.port,
                user=self.user,
                kerb_ticket=self.kerb_ticket,
                extra_conf=self.extra_conf,
            )
        except OSError as e:
            message = str(e)
            env = ", ".join(
                f"{name}={os.environ[name]!r}" if os.environ.get(name) else f"{name} is unset"
                for name in ("HADOOP_HOME", "JAVA_HOME", "ARROW_LIBHDFS_DIR")
            )
            classpath = (
                "CLASSPATH is unset"
                if not os.environ.get("CLASSPATH")
                else f"CLASSPATH has {len(os.environ['CLASSPATH'].split(os.pathsep))} entries"
            )
            if "load" in message.lower():
                raise StoreError(
                    f"HDFSStore(driver='libhdfs') could not load Hadoop's native client "
                    f"libhdfs: {message}. libhdfs needs a Hadoop installation on every machine "
                    f"that opens the store: JAVA_HOME pointing at a JDK, HADOOP_HOME with "
                    f"lib/native/libhdfs.so (or ARROW_LIBHDFS_DIR pointing at its folder) and "
                    f"the Hadoop jars on CLASSPATH (export CLASSPATH=$($HADOOP_HOME/bin/hdfs "
                    f"classpath --glob)). Here: {env}, {classpath}. Without a Hadoop "
                    f"installation, use driver='webhdfs' with the NameNode's HTTP address "
                    f"(webhdfs://<namenode>:9870{self.to_fs_path(self.prefix_path)})."
                ) from e
            raise StoreError(
                f"HDFSStore(driver='libhdfs') could not connect to HDFS at "
                f"{self._authority() or 'fs.defaultFS'}: {message}. Check the NameNode host "
                f"and port, and that CLASSPATH holds the Hadoop jars and configuration "
                f"(export CLASSPATH=$($HADOOP_HOME/bin/hdfs classpath --glob)); here: {env}, "
                f"{classpath}. driver='webhdfs' is an alternative that needs only HTTP."
            ) from e

    def _make_webhdfs(self) -> pafs.FileSystem:
        from cerebro.storage._webhdfs import webhdfs_filesystem

        kerberos = self.kerb_ticket is not None
        if kerberos:
            if importlib.util.find_spec("requests_kerberos") is None:
                raise StoreError(
                    "HDFSStore(driver='webhdfs') with kerb_ticket needs the requests-kerberos "
                    "package for SPNEGO authentication, which is not installed "
                    "(pip install requests-kerberos), got kerb_ticket="
                    f"{self.kerb_ticket!r}"
                )
            if os.environ.get("KRB5CCNAME") != self.kerb_ticket:
                logger.info("setting KRB5CCNAME=%s for WebHDFS Kerberos", self.kerb_ticket)
                os.environ["KRB5CCNAME"] = self.kerb_ticket
        host = f"[{self.host}]" if ":" in self.host else self.host
        return webhdfs_filesystem(f"http://{host}:{self.port}", user=self.user, kerberos=kerberos)

    def _replace(self, tmp_path: str, fs_path: str) -> None:
        """Move ``tmp_path`` onto ``fs_path``: delete the old file, then rename.

        HDFS rename never replaces an existing file, so replacing is two NameNode operations:
        between them (milliseconds) a reader finds no file at ``fs_path``, and a crash there
        leaves the complete new content under the temporary name beside it. A reader never
        sees a partial file.
        """
        fs = self.filesystem
        if fs.get_file_info(fs_path).type == pafs.FileType.File:
            fs.delete_file(fs_path)
        fs.move(tmp_path, fs_path)

    def __repr__(self) -> str:
        return f"HDFSStore({self.prefix_path!r}, driver={self.driver!r})"


def _valid_host(host: str) -> bool:
    return bool(host.strip()) and not any(c in host for c in "/?#@ ") and host.count(":") != 1


def _check_port(port: Any, arg_name: str) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise CerebroValueError(f"{arg_name} must be an int in 1..65535, got {port!r}")
