"""The benchmark suite end to end in its smallest mode (``benchmarks/suite.py --quick``).

One real run (Spark local[1] and local[2], Parquet, TensorFlow) into a temporary folder; the
tests then check what it wrote: the RESULTS file has every section with numbers, the plots
are valid PNG images, the raw JSON agrees with the tables, and every file is world-readable
with no temporary file left behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import subprocess
import sys
import zlib

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITE = os.path.join(REPO, "benchmarks", "suite.py")
SECTIONS = [
    "## Machine and versions",
    "## Targets",
    "## Workloads",
    "## Makespan and efficiency",
    "## Data each worker or task reads and holds",
    "## MOP: hops and the per-task breakdown",
    "## Task parallel: per-task breakdown",
    "## Scaling (MOP, MLP, W=2",
    "## Hop cost against model size",
    "## Input pipeline against consumption",
    "## Definitions",
]
PLOTS = ["times", "scaling", "hops", "input"]
NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?%?$")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    env = dict(
        os.environ,
        SPARK_LOCAL_IP="127.0.0.1",
        PYSPARK_PYTHON=sys.executable,
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    # Its own process group: a timeout stops the suite and every process it started.
    proc = subprocess.Popen(
        [sys.executable, SUITE, "--quick", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stdout[-3000:] + stderr[-8000:]
    return out


def _section(text: str, title: str) -> str:
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start : end if end > 0 else len(text)]


def _table_rows(section: str) -> list[list[str]]:
    """The body rows of the first Markdown table in ``section``, as lists of cells."""
    lines = section.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    assert end - start >= 3, section[:500]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[start + 2 : end]]


def _png_chunks(path: str) -> list[tuple[bytes, bytes]]:
    """The chunks of a PNG file; fails unless the signature and every CRC are right."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r} of {path}"
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


def test_results_file_has_every_section_with_numbers(quick):
    text = (quick / "RESULTS_quick.md").read_text()
    for title in SECTIONS:
        assert title in text, title
    header = _section(text, "## Machine and versions")
    assert re.search(r"Machine: \d+ cores", header)
    assert re.search(r"load average .* at start [\d.]+, [\d.]+, [\d.]+, at end [\d.]+", header)
    for lib in ("python", "pyspark", "tensorflow", "keras", "numpy", "pyarrow", "petastorm"):
        assert re.search(rf"\b{lib} \d+\.\d+", header), lib
    assert re.search(r"Git commit: [0-9a-f]{7,}", header)

    targets = _table_rows(_section(text, "## Targets"))
    assert len(targets) == 5
    for _target, measured, result in targets:
        assert result in ("PASS", "**MISS**"), result
        assert re.search(r"\d+\.\d+", measured), measured
    if any(r == "**MISS**" for _, _, r in targets):
        assert "### Where the time goes (missed targets)" in text

    rows = _table_rows(_section(text, "## Makespan and efficiency"))
    assert sorted((r[0], r[1]) for r in rows) == [
        ("CNN", "1"),
        ("CNN", "2"),
        ("MLP", "1"),
        ("MLP", "2"),
    ]
    for row in rows:
        assert all(NUMBER.match(c) for c in row[2:]), row
        assert all(float(c.replace(",", "")) > 0 for c in row[2:]), row

    for title in SECTIONS[5:7] + SECTIONS[8:10]:
        body = _table_rows(_section(text, title))
        assert body, title
        assert all(any(NUMBER.match(c) for c in row) for row in body), title
    hops = _table_rows(_section(text, "## Hop cost against model size"))
    assert [r[0] for r in hops] == ["10,009", "99,685"]  # ~1e4 and ~1e5 parameters
    for title in ("### configurations", "### rows", "### model size"):
        assert _table_rows(_section(text, title)), title
    for name in PLOTS:
        assert f"(results/suite-quick-{name}.png)" in text, name


def test_plots_are_valid_png_images(quick):
    import matplotlib.image

    for name in PLOTS:
        path = str(quick / "results" / f"suite-quick-{name}.png")
        chunks = _png_chunks(path)
        kinds = [k for k, _ in chunks]
        assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND", kinds
        width, height = struct.unpack(">II", chunks[0][1][:8])
        assert width > 300 and height > 200, (name, width, height)
        zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))  # complete image data
        pixels = matplotlib.image.imread(path)
        assert pixels.shape[:2] == (height, width)
        assert pixels.std() > 0, f"{name} is blank"


def test_raw_json_matches_the_tables_and_mop_holds_a_shard(quick):
    report = json.loads((quick / "results" / "suite-quick.json").read_text())
    assert report["mode"] == "quick"
    assert set(report["runs"]) == {"mlp-w1", "mlp-w2", "cnn-w1", "cnn-w2"}
    for row in report["summary"]["rows"]:
        assert row["efficiency"] == pytest.approx(row["ideal_s"] / row["mop_s"])
        assert row["mop_over_tp"] == pytest.approx(row["mop_s"] / row["task_parallel_s"])
        # Every task-parallel task holds the whole data set, each MOP worker its 1/W shard.
        shard = row["mop_bytes_per_worker"] * row["workers"]
        assert abs(shard - row["tp_bytes_per_task"]) <= 0.02 * row["tp_bytes_per_task"], row
        run = report["runs"][f"{row['workload']}-w{row['workers']}"]
        mop, tp = run["mop"], run["task_parallel"]
        assert mop["statuses"] == ["finished"]
        assert mop["num_workers"] == row["workers"] == tp["num_workers"]
        assert len(tp["tasks"]) == row["configs"] == mop["configs"]
        assert (
            mop["hops"]
            == row["configs"] * row["workers"] * report["sizes"][f"{row['workload']}_epochs"]
        )
    ideal = report["baselines"]["mlp"]["ideal"]
    assert ideal["train_rows"] + ideal["val_rows"] == report["sizes"]["mlp_rows"]


def test_files_are_world_readable_and_no_temp_file_is_left(quick):
    files = [quick / "RESULTS_quick.md", *sorted((quick / "results").iterdir())]
    names = sorted(p.name for p in files)
    assert names == sorted(
        ["RESULTS_quick.md", "suite-quick.json"] + [f"suite-quick-{n}.png" for n in PLOTS]
    )
    for path in files:
        assert os.stat(path).st_mode & 0o444 == 0o444, path
