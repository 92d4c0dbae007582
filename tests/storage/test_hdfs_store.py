"""HDFSStore beyond the conformance suite: arguments and URLs, the libhdfs and Kerberos errors,
the WebHDFS filesystem's pyarrow semantics and failure handling, the test server's protocol, and
Spark (Hadoop's own WebHdfsFileSystem) reading and writing through the same server.
"""

from __future__ import annotations

import os
import pickle
import posixpath
import random
import socket
import sys

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from cerebro.exceptions import CerebroTypeError, CerebroValueError, StoreError
from cerebro.storage import HDFSStore, LocalStore, Store
from cerebro.storage._base import TMP_MARKER
from cerebro.storage._webhdfs import READ_AHEAD, WebHDFSHandler, webhdfs_filesystem

# ---------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (("hdfs://nn:8020/x",), {"driver": "s3"}, CerebroValueError, r"driver must be one of"),
        (("relative/x",), {"host": "nn"}, CerebroValueError, r"prefix_path must be an absolute"),
        (("webhdfs://nn:9870/x",), {}, CerebroValueError, r"needs driver='webhdfs'"),
        (
            ("hdfs://nn:8020/x",),
            {"driver": "webhdfs"},
            CerebroValueError,
            r"needs driver='libhdfs'",
        ),
        (("s3://bucket/x",), {}, CerebroValueError, r"hdfs:// or webhdfs:// URL"),
        (("file:///x",), {}, CerebroValueError, r"hdfs:// or webhdfs:// URL"),
        (
            ("/x",),
            {"host": "nn", "port": 0},
            CerebroValueError,
            r"port must be an int in 1\.\.65535, got 0",
        ),
        (("/x",), {"host": "nn", "port": 70000}, CerebroValueError, r"got 70000"),
        (("/x",), {"host": "nn", "port": "8020"}, CerebroValueError, r"got '8020'"),
        (("/x",), {"host": "nn", "port": True}, CerebroValueError, r"got True"),
        (("hdfs://nn:99999/x",), {}, CerebroValueError, r"prefix_path is not a valid URL"),
        (("hdfs://nn:0/x",), {}, CerebroValueError, r"the port in prefix_path must be an int"),
        (("/x",), {"host": "nn:8020"}, CerebroValueError, r"host must be a NameNode host"),
        (("/x",), {"host": "http://nn"}, CerebroValueError, r"host must be a NameNode host"),
        (("/x",), {"host": ""}, CerebroValueError, r"host must be a NameNode host"),
        (
            ("hdfs://nn:8020/x",),
            {"host": "other"},
            CerebroValueError,
            r"host='other' does not match",
        ),
        (("hdfs://nn:8020/x",), {"port": 9000}, CerebroValueError, r"port=9000 does not match"),
        (("/x",), {"port": 8020}, CerebroValueError, r"port=8020 needs a host"),
        (
            ("/x",),
            {"driver": "webhdfs"},
            CerebroValueError,
            r"driver='webhdfs' needs the NameNode",
        ),
        (("webhdfs:///x",), {"driver": "webhdfs"}, CerebroValueError, r"needs the NameNode"),
        (("hdfs://me@nn:8020/x",), {}, CerebroValueError, r"must not carry a user"),
        (("hdfs://nn:8020/x?a=1",), {}, CerebroValueError, r"must not contain '\?' or '#'"),
        (("/x#frag",), {"host": "nn"}, CerebroValueError, r"must not contain"),
        (("//nn/x",), {}, CerebroValueError, r"starting with '//' reads as a URL without"),
        (("",), {}, CerebroValueError, r"prefix_path must be a non-empty"),
        ((None,), {}, CerebroValueError, r"prefix_path must be a non-empty"),
        (("/x",), {"user": ""}, CerebroValueError, r"user must be a non-empty string"),
        (("/x",), {"kerb_ticket": ""}, CerebroValueError, r"kerb_ticket must be the path"),
        (
            ("webhdfs://nn:9870/x",),
            {"driver": "webhdfs", "extra_conf": {"a": "b"}},
            CerebroValueError,
            r"extra_conf is Hadoop configuration for driver='libhdfs'",
        ),
        (("/x",), {"extra_conf": {"dfs.replication": 2}}, CerebroTypeError, r"dict of str to str"),
        (
            ("webhdfs://nn:9870/x",),
            {"driver": "webhdfs", "user": "u", "kerb_ticket": "/tmp/krb5cc_0"},
            CerebroValueError,
            r"user cannot be combined with kerb_ticket",
        ),
        (
            ("hdfs://nn:8020/x",),
            {"train_path": "rel/train"},
            CerebroValueError,
            r"train_path must be an absolute",
        ),
        (
            ("hdfs://nn:8020/x",),
            {"val_path": "hdfs://other:8020/v"},
            CerebroValueError,
            r"val_path must be on the store's NameNode nn:8020",
        ),
        (
            ("hdfs://nn:8020/x",),
            {"runs_path": "hdfs://nn:9000/r"},
            CerebroValueError,
            r"runs_path must be on the store's NameNode",
        ),
        (
            ("hdfs://nn:8020/x",),
            {"logs_path": "webhdfs://nn:9870/l"},
            CerebroValueError,
            r"logs_path .* needs driver='webhdfs'",
        ),
        (
            ("hdfs://nn:8020/x",),
            {"logs_path": "hdfs:///l"},
            CerebroValueError,
            r"logs_path must name the store's NameNode",
        ),
    ],
)
def test_bad_arguments(args, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        HDFSStore(*args, **kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "prefix", "fs_path"),
    [
        (("hdfs://NameNode:8020/a/b/",), {}, "hdfs://namenode:8020/a/b", "/a/b"),
        (("hdfs://nn/a",), {}, "hdfs://nn:8020/a", "/a"),
        (("/a/./b/../c",), {"host": "nn"}, "hdfs://nn:8020/a/c", "/a/c"),
        (("/a",), {"host": "nn", "port": 9000}, "hdfs://nn:9000/a", "/a"),
        (("hdfs://nn:9000/a",), {"host": "nn", "port": 9000}, "hdfs://nn:9000/a", "/a"),
        (("/exp",), {}, "hdfs:///exp", "/exp"),
        (("/exp",), {"host": "default"}, "hdfs:///exp", "/exp"),
        (("hdfs:///exp",), {}, "hdfs:///exp", "/exp"),
        (("webhdfs://nn/exp",), {"driver": "webhdfs"}, "webhdfs://nn:9870/exp", "/exp"),
        (("/exp",), {"driver": "webhdfs", "host": "nn"}, "webhdfs://nn:9870/exp", "/exp"),
        (("hdfs://[::1]:8020/exp",), {}, "hdfs://[::1]:8020/exp", "/exp"),
        (("hdfs://nn:8020/",), {}, "hdfs://nn:8020", "/"),
    ],
)
def test_urls_are_canonical(args, kwargs, prefix: str, fs_path: str) -> None:
    store = HDFSStore(*args, **kwargs)
    assert store.prefix_path == prefix
    assert store.to_fs_path(store.prefix_path) == fs_path
    assert store.get_train_data_path() == prefix + "/train_data"
    assert store.to_fs_path(store.get_checkpoint_path("m")) == posixpath.join(
        fs_path, "runs/m/checkpoint.keras"
    )


def test_overrides_accept_paths_and_urls_on_the_same_namenode() -> None:
    store = HDFSStore(
        "hdfs://nn:8020/exp",
        train_path="/data/train",
        val_path="hdfs://nn/data/val",
        runs_path="hdfs://nn:8020/scratch/runs/",
    )
    assert store.get_train_data_path() == "hdfs://nn:8020/data/train"
    assert store.get_val_data_path() == "hdfs://nn:8020/data/val"
    assert store.get_run_path("m") == "hdfs://nn:8020/scratch/runs/m"
    assert store.get_logs_path("m") == "hdfs://nn:8020/exp/logs/m"


def test_to_fs_path_refuses_urls_of_other_filesystems() -> None:
    store = HDFSStore("hdfs://nn:8020/exp")
    assert store.to_fs_path("/exp/x") == "/exp/x"
    assert store.to_fs_path("hdfs://nn:8020/exp/x/../y") == "/exp/y"
    for foreign in ("hdfs://other:8020/x", "file:///exp", "webhdfs://nn:9870/x", "x/y"):
        with pytest.raises(CerebroValueError, match="url"):
            store.to_fs_path(foreign)


@settings(max_examples=60, deadline=None)
@given(
    parts=st.lists(
        st.sampled_from(["a", "b-1", "c_2", ".", "..", "", "d.e", "ü"]), min_size=0, max_size=6
    ),
    driver=st.sampled_from(["libhdfs", "webhdfs"]),
)
def test_normalization_is_idempotent_and_matches_posix(parts: list[str], driver: str) -> None:
    path = "/" + "/".join(["top", *parts])  # a leading '//' would name a host: tested above
    store = HDFSStore(path, host="nn", driver=driver)
    expected = "/" + posixpath.normpath(path).lstrip("/")
    assert store.to_fs_path(store.prefix_path) == expected
    assert HDFSStore(store.prefix_path, driver=driver) == store


def test_store_create_dispatches_by_scheme(tmp_path) -> None:
    assert Store.create(str(tmp_path / "s")) == LocalStore(str(tmp_path / "s"))
    assert isinstance(Store.create((tmp_path / "s").as_uri()), LocalStore)
    libhdfs = Store.create("hdfs://nn:8020/exp", user="me")
    assert isinstance(libhdfs, HDFSStore) and libhdfs.driver == "libhdfs"
    assert libhdfs == HDFSStore("hdfs://nn:8020/exp", user="me")
    assert Store.create("hdfs:///exp").prefix_path == "hdfs:///exp"
    web = Store.create("webhdfs://nn:9870/exp")
    assert isinstance(web, HDFSStore) and web.driver == "webhdfs"
    with pytest.raises(CerebroValueError, match="needs driver='webhdfs'"):
        Store.create("webhdfs://nn:9870/exp", driver="libhdfs")
    with pytest.raises(CerebroValueError, match="url scheme must be one of"):
        Store.create("s3://bucket/exp")
    with pytest.raises(CerebroValueError, match="url must be a non-empty string"):
        Store.create("")


def test_pickle_keeps_every_setting() -> None:
    store = HDFSStore(
        "/exp", host="nn", port=9000, user="u", kerb_ticket="/tmp/cc", extra_conf={"k": "v"}
    )
    clone = pickle.loads(pickle.dumps(store))
    assert clone == store
    assert (clone.host, clone.port, clone.user, clone.kerb_ticket, clone.extra_conf) == (
        "nn", 9000, "u", "/tmp/cc", {"k": "v"},
    )  # fmt: skip
    assert clone != HDFSStore("/exp", host="nn", port=9000, user="other")


# ---------------------------------------------------------------------- libhdfs, Kerberos


def test_missing_libhdfs_raises_a_store_error_that_says_what_is_missing(
    tmp_path, monkeypatch
) -> None:
    # An empty libhdfs folder makes the failure certain even where Hadoop is installed.
    monkeypatch.setenv("ARROW_LIBHDFS_DIR", str(tmp_path))
    monkeypatch.delenv("HADOOP_HOME", raising=False)
    store = HDFSStore("hdfs://127.0.0.1:8020/exp")
    with pytest.raises(StoreError) as info:
        store.filesystem  # noqa: B018 - opening is what fails
    message = str(info.value)
    for needed in ("libhdfs", "HADOOP_HOME is unset", "CLASSPATH", "JAVA_HOME", "webhdfs"):
        assert needed in message, needed
    assert "webhdfs://<namenode>:9870/exp" in message
    with pytest.raises(StoreError, match="libhdfs"):
        store.check_writable()


def test_webhdfs_kerberos_without_requests_kerberos_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "requests_kerberos", None)  # not importable
    store = HDFSStore("webhdfs://nn:9870/exp", driver="webhdfs", kerb_ticket="/tmp/krb5cc_0")
    with pytest.raises(StoreError, match=r"requests-kerberos .*pip install requests-kerberos"):
        store.filesystem  # noqa: B018


# ---------------------------------------------------------------------- WebHDFS failures


def _webhdfs_store(server, sub: str = "exp") -> HDFSStore:
    return HDFSStore(f"webhdfs://{server.address}/{sub}", driver="webhdfs")


def test_datanode_failure_midway_leaves_no_file_and_keeps_the_old_one(webhdfs_server) -> None:
    store = _webhdfs_store(webhdfs_server)
    url = store.get_checkpoint_path("m1")
    webhdfs_server.fail_next("CREATE")
    with pytest.raises(OSError, match="injected failure"):
        store.write_bytes(url, b"new checkpoint " * 1000)
    assert not store.exists(url)
    assert os.listdir(webhdfs_server.local_path("/exp/runs/m1")) == []
    store.write_bytes(url, b"old")
    webhdfs_server.fail_next("CREATE")
    with pytest.raises(OSError, match="injected failure"):
        store.write_bytes(url, b"new checkpoint " * 1000)
    assert store.read_bytes(url) == b"old"
    assert os.listdir(webhdfs_server.local_path("/exp/runs/m1")) == ["checkpoint.keras"]


def test_failed_upload_midway_leaves_no_temp(webhdfs_server, tmp_path) -> None:
    store = _webhdfs_store(webhdfs_server)
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(300_000))
    webhdfs_server.fail_next("CREATE")
    with pytest.raises(OSError, match="injected failure"):
        store.upload_file(str(local), store.prefix_path + "/up/big.bin")
    assert os.listdir(webhdfs_server.local_path("/exp/up")) == []
    store.upload_file(str(local), store.prefix_path + "/up/big.bin")  # the retry works
    assert store.read_bytes(store.prefix_path + "/up/big.bin") == local.read_bytes()


class _HDFSRenameHandler(WebHDFSHandler):
    """WebHDFS with HDFS's own rename, which never replaces a file (as libhdfs's rename)."""

    def move(self, src: str, dest: str) -> None:
        with self._errors(src):
            self.client.rename(src, dest)


def test_replace_works_where_rename_does_not_overwrite(webhdfs_server) -> None:
    store = _webhdfs_store(webhdfs_server)
    store._fs = pafs.PyFileSystem(_HDFSRenameHandler(f"http://{webhdfs_server.address}"))
    url = store.get_run_state_path("m1")
    store.write_text(url, "first")
    other = store.prefix_path + "/other.json"
    store.write_text(other, "x")
    with pytest.raises(OSError, match="Unable to rename"):  # the raw rename refuses ...
        store.filesystem.move(store.to_fs_path(other), store.to_fs_path(url))
    store.write_text(url, "second")  # ... and the store replaces anyway
    assert store.read_text(url) == "second"
    assert os.listdir(webhdfs_server.local_path("/exp/runs/m1")) == ["state.json"]


def test_permission_denied_folder_fails_check_writable(webhdfs_server) -> None:
    webhdfs_server.read_only.add("/locked")
    store = _webhdfs_store(webhdfs_server, "locked/exp")
    with pytest.raises(
        StoreError, match="cannot be written: PermissionError: .*Permission denied"
    ):
        store.check_writable()
    with pytest.raises(PermissionError):
        store.write_text(store.prefix_path + "/x", "no")


def test_unreachable_namenode_fails_check_writable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = HDFSStore(f"webhdfs://127.0.0.1:{port}/exp", driver="webhdfs")
    with pytest.raises(StoreError, match=f"cannot reach WebHDFS at http://127.0.0.1:{port}"):
        store.check_writable()


# ---------------------------------------------------------------------- pyarrow semantics


@pytest.fixture
def webfs(webhdfs_server) -> pafs.FileSystem:
    return webhdfs_filesystem(f"http://{webhdfs_server.address}", user="tester")


def test_file_info_and_selectors(webfs, webhdfs_server) -> None:
    webfs.create_dir("/d/e")
    with webfs.open_output_stream("/d/e/f.bin") as f:
        f.write(b"12345")
    with webfs.open_output_stream("/d/g.bin") as f:
        f.write(b"")
    infos = webfs.get_file_info(["/d", "/d/e/f.bin", "/nope"])
    assert [i.type for i in infos] == [
        pafs.FileType.Directory, pafs.FileType.File, pafs.FileType.NotFound,
    ]  # fmt: skip
    assert infos[1].size == 5 and infos[1].mtime is not None
    flat = webfs.get_file_info(pafs.FileSelector("/d"))
    assert sorted(i.path for i in flat) == ["/d/e", "/d/g.bin"]
    deep = webfs.get_file_info(pafs.FileSelector("/d", recursive=True))
    assert sorted(i.path for i in deep) == ["/d/e", "/d/e/f.bin", "/d/g.bin"]
    assert webfs.get_file_info(pafs.FileSelector("/nope", allow_not_found=True)) == []
    with pytest.raises(FileNotFoundError):
        webfs.get_file_info(pafs.FileSelector("/nope"))
    with pytest.raises(NotADirectoryError):
        webfs.get_file_info(pafs.FileSelector("/d/g.bin"))
    assert webhdfs_server.unknown_ops == {}


def test_create_and_delete_semantics(webfs) -> None:
    with pytest.raises(FileNotFoundError):
        webfs.create_dir("/a/b", recursive=False)
    webfs.create_dir("/a/b", recursive=True)
    webfs.create_dir("/a/b/c", recursive=False)
    with webfs.open_output_stream("/a/file") as f:
        f.write(b"x")
    with pytest.raises(FileExistsError):
        webfs.create_dir("/a/file")
    with pytest.raises(NotADirectoryError):
        webfs.delete_dir("/a/file")
    with pytest.raises(IsADirectoryError):
        webfs.delete_file("/a/b")
    with pytest.raises(FileNotFoundError):
        webfs.delete_file("/a/missing")
    webfs.delete_dir_contents("/a")
    assert webfs.get_file_info(pafs.FileSelector("/a")) == []
    webfs.delete_dir_contents("/missing", missing_dir_ok=True)
    with pytest.raises(FileNotFoundError):
        webfs.delete_dir_contents("/missing")
    webfs.delete_dir("/a")
    assert webfs.get_file_info("/a").type == pafs.FileType.NotFound


def test_move_copy_append_semantics(webfs) -> None:
    def write(path: str, data: bytes) -> None:
        with webfs.open_output_stream(path) as f:
            f.write(data)

    def read(path: str) -> bytes:
        with webfs.open_input_stream(path) as f:
            return f.read()

    write("/m/a", b"A")
    write("/m/b", b"B")
    webfs.move("/m/a", "/m/b")  # file onto file: replaced (HDFS rename alone would refuse)
    assert read("/m/b") == b"A" and webfs.get_file_info("/m/a").type == pafs.FileType.NotFound
    webfs.create_dir("/m/full")
    write("/m/full/x", b"x")
    webfs.create_dir("/m/folder")
    with pytest.raises(OSError, match="not empty"):
        webfs.move("/m/folder", "/m/full")
    webfs.create_dir("/m/empty")
    webfs.move("/m/folder", "/m/empty")  # folder onto an empty folder: replaced
    assert webfs.get_file_info("/m/folder").type == pafs.FileType.NotFound
    assert webfs.get_file_info("/m/empty").type == pafs.FileType.Directory
    with pytest.raises(FileExistsError):
        webfs.move("/m/b", "/m/full")  # a file onto a folder
    with pytest.raises(FileNotFoundError):
        webfs.move("/m/none", "/m/c")
    webfs.copy_file("/m/b", "/m/copy")
    assert read("/m/copy") == b"A" and read("/m/b") == b"A"
    with webfs.open_append_stream("/m/copy") as f:
        f.write(b"-more")
    assert read("/m/copy") == b"A-more"
    with webfs.open_append_stream("/m/new") as f:
        f.write(b"fresh")
    assert read("/m/new") == b"fresh"
    with pytest.raises(FileNotFoundError):
        webfs.open_input_stream("/m/none")
    with pytest.raises(IsADirectoryError):
        webfs.open_input_file("/m/full")


def test_random_access_reads_match_the_bytes(webfs, webhdfs_server) -> None:
    data = random.Random(0).randbytes(3 * READ_AHEAD + 12345)
    with webfs.open_output_stream("/r/blob") as f:
        f.write(data)
    with open(webhdfs_server.local_path("/r/blob"), "rb") as f:
        assert f.read() == data
    rng = random.Random(1)
    with webfs.open_input_file("/r/blob") as f:
        assert f.size() == len(data)
        for _ in range(40):
            offset = rng.randrange(0, len(data) + 10)
            length = rng.choice([1, 7, 4096, READ_AHEAD + 3, 2 * READ_AHEAD])
            assert f.read_at(length, offset) == data[offset : offset + length]
        f.seek(-10, 2)
        assert f.read() == data[-10:]
    with webfs.open_input_stream("/r/blob") as f:
        assert f.read() == data


def test_pickled_filesystem_reconnects(webfs) -> None:
    with webfs.open_output_stream("/p/x") as f:
        f.write(b"pickled")
    clone = pickle.loads(pickle.dumps(webfs))
    with clone.open_input_stream("/p/x") as f:
        assert f.read() == b"pickled"
    handler = WebHDFSHandler("http://h:1", user="u")
    assert pickle.loads(pickle.dumps(handler)) == handler and handler._client is None


# ---------------------------------------------------------------------- the server's protocol


def test_server_speaks_the_webhdfs_wire_format(webhdfs_server) -> None:
    base = f"http://{webhdfs_server.address}/webhdfs/v1"
    missing = requests.get(f"{base}/nope?op=GETFILESTATUS&user.name=t", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["RemoteException"] == {
        "exception": "FileNotFoundException",
        "javaClassName": "java.io.FileNotFoundException",
        "message": "File does not exist: /nope",
    }
    step1 = requests.put(f"{base}/d/f?op=CREATE", allow_redirects=False, timeout=10)
    assert step1.status_code == 307
    location = step1.headers["Location"]
    assert location.startswith(f"http://{webhdfs_server.address}/webhdfs/v1/d/f?")
    step2 = requests.put(location, data=iter([b"chunked ", b"body"]), timeout=10)
    assert step2.status_code == 201
    again = requests.put(f"{base}/d/f?op=CREATE&overwrite=false", timeout=10)
    assert again.status_code == 403
    assert again.json()["RemoteException"]["exception"] == "FileAlreadyExistsException"
    no_redirect = requests.put(f"{base}/d/g?op=CREATE&noredirect=true", timeout=10)
    assert no_redirect.status_code == 200 and "datanode=true" in no_redirect.json()["Location"]
    status = requests.get(f"{base}/d/f?op=GETFILESTATUS", timeout=10).json()["FileStatus"]
    assert status["type"] == "FILE" and status["length"] == len(b"chunked body")
    listing = requests.get(f"{base}/d?op=LISTSTATUS", timeout=10).json()
    assert [s["pathSuffix"] for s in listing["FileStatuses"]["FileStatus"]] == ["f", "g"]
    ranged = requests.get(f"{base}/d/f?op=OPEN&offset=8&length=2", timeout=10)
    assert ranged.content == b"bo" and ranged.history[0].status_code == 307
    summary = requests.get(f"{base}/d?op=GETCONTENTSUMMARY", timeout=10).json()
    assert summary["ContentSummary"]["fileCount"] == 2
    assert requests.get(f"{base}/?op=GETHOMEDIRECTORY&user.name=ann", timeout=10).json() == {
        "Path": "/user/ann"
    }
    not_empty = requests.delete(f"{base}/d?op=DELETE&recursive=false", timeout=10)
    assert not_empty.status_code == 403
    assert not_empty.json()["RemoteException"]["exception"] == "PathIsNotEmptyDirectoryException"
    assert requests.delete(f"{base}/d?op=DELETE&recursive=true", timeout=10).json() == {
        "boolean": True
    }
    unknown = requests.get(f"{base}/?op=NOSUCHOP", timeout=10)
    assert unknown.status_code == 400 and "Invalid value" in unknown.text


def test_hdfs_package_client_against_the_server(webhdfs_server, tmp_path) -> None:
    from hdfs import InsecureClient

    client = InsecureClient(f"http://{webhdfs_server.address}", user="root")
    client.write("rel/file.txt", data="hello", encoding="utf-8")  # relative: under the home dir
    assert client.list("/user/root/rel") == ["file.txt"]
    with client.read("/user/root/rel/file.txt", encoding="utf-8") as r:
        assert r.read() == "hello"
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "a.bin").write_bytes(b"abc")
    client.upload("/up", str(tmp_path / "up"))
    client.download("/up", str(tmp_path / "down"))
    assert (tmp_path / "down" / "a.bin").read_bytes() == b"abc"
    client.rename("/up/a.bin", "/up/b.bin")
    assert client.content("/up")["length"] == 3
    assert client.delete("/up", recursive=True) and client.status("/up", strict=False) is None


# ---------------------------------------------------------------------- Spark end to end


def test_spark_reads_and_writes_parquet_on_webhdfs(spark, webhdfs_server) -> None:
    """Hadoop's WebHdfsFileSystem (in pyspark's jars) against the server, through store URLs."""
    store = _webhdfs_store(webhdfs_server)
    store.check_writable()
    n = 600
    df = spark.range(n).selectExpr("id", "CAST(id AS DOUBLE) * 0.5 AS x", "array(id, -id) AS v")
    df.repartition(3).write.mode("overwrite").parquet(store.get_train_data_path())

    names = store.listdir(store.get_train_data_path())
    assert "_SUCCESS" in names and sum(n.endswith(".parquet") for n in names) == 3
    assert not any(TMP_MARKER in n or n.startswith("_temporary") for n in names)
    back = spark.read.parquet(store.get_train_data_path())
    stats = back.selectExpr("count(*)", "sum(id)", "sum(x)").first()
    assert tuple(stats) == (n, n * (n - 1) // 2, n * (n - 1) / 4)
    # The same files through the store's pyarrow filesystem, and on the server's disk:
    table = pq.read_table(
        store.to_fs_path(store.get_train_data_path()), filesystem=store.filesystem
    ).sort_by("id")
    assert table.column("id").to_pylist() == list(range(n))
    assert table.column("v").to_pylist()[5] == [5, -5]
    # Spark reads what the store wrote with pyarrow:
    pq.write_table(
        pa.table({"k": [1, 2, 3]}),
        store.to_fs_path(store.get_val_data_path() + "/part-0.parquet"),
        filesystem=store.filesystem,
    )
    assert sorted(r.k for r in spark.read.parquet(store.get_val_data_path()).collect()) == [
        1,
        2,
        3,
    ]

    used = {op for _method, op in webhdfs_server.requests}
    assert {"CREATE", "OPEN", "RENAME", "LISTSTATUS", "GETFILESTATUS", "MKDIRS"} <= used
    assert webhdfs_server.unknown_ops == {}
