"""Hostile and damaged input costs neither memory, data nor the run.

Real hostile files, made here: H.264 streams whose header says 320x240 and whose frames switch to
another size (two x264 bitstreams concatenated, muxed into mp4 by PyAV), sparse files made with
``truncate``, catalog rows holding NUL bytes and 200 KB fields, FIFOs, symlinks swapped in after the
catalog was read. The pipeline run is measured in a subprocess of its own (its peak RSS, see
:data:`PEAK`).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import pytest

from videonet.curation.judge.fetch import FetchError, fetched_video, open_regular
from videonet.curation.judge.frames import MAX_PIXELS, DecodeError, iter_frames, plausible_seconds, probe
from videonet.curation.search.catalog import MAX_FIELD_CHARS, CatalogSource, validate_row
from videonet.errors import UserError, printable

CAT = "n02124075"  # Egyptian cat: the demo's cat clip is top-1 there
SMALL = (320, 240)
AT_LIMIT = (4096, 2160)  # exactly MAX_PIXELS
OVER_LIMIT = (4096, 2176)  # one macroblock row more
BOMB = (16000, 16000)  # what the 1.9 MB file switched to: gigabytes per decoded frame


def h264_packets(width: int, height: int, frames: int) -> list[bytes]:
    """Grey frames encoded by x264, SPS and PPS repeated in every keyframe (so a stream that
    continues with another encoder's packets switches size at its first one)."""
    import av

    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base, codec.framerate = Fraction(1, 25), Fraction(25)
    codec.options = {"preset": "ultrafast", "tune": "zerolatency", "x264-params": "repeat-headers=1"}
    packets = []
    for i in range(frames):
        frame = av.VideoFrame(width, height, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes([128]) * plane.buffer_size)
        frame.pts = i
        packets += [bytes(p) for p in codec.encode(frame)]
    return packets + [bytes(p) for p in codec.encode(None)]


def switching_mp4(path: Path, segments: list[tuple[int, int, int]], seconds_per_frame: int = 2) -> Path:
    """An mp4 whose header (stsd, from the first packet) says the first segment's size and whose
    stream switches to each next ``(width, height, frames)`` segment; one frame per 2 s, so a few
    frames pass the 10 s duration rule."""
    import av

    packets = [p for width, height, frames in segments for p in h264_packets(width, height, frames)]
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("h264", rate=25)
        stream.width, stream.height = segments[0][:2]
        for i, data in enumerate(packets):
            packet = av.Packet(data)
            packet.stream, packet.time_base = stream, Fraction(1, 25)
            packet.pts = packet.dts = i * 25 * seconds_per_frame
            out.mux(packet)
    return path


def test_a_stream_that_switches_size_is_refused_at_the_first_frame_over_the_limit(tmp_path):
    at = switching_mp4(tmp_path / "at.mp4", [(*SMALL, 5), (*AT_LIMIT, 2)])
    over = switching_mp4(tmp_path / "over.mp4", [(*SMALL, 5), (*OVER_LIMIT, 2)])
    assert AT_LIMIT[0] * AT_LIMIT[1] == MAX_PIXELS < OVER_LIMIT[0] * OVER_LIMIT[1]
    for path in (at, over):  # the header says 320x240 for both
        info = probe(str(path))
        assert (info.width, info.height) == SMALL and info.duration >= 10
    assert len(list(iter_frames(str(at), 100))) == 7  # exactly at the limit: every frame decodes
    with pytest.raises(DecodeError, match=r"^resolution 4096x2176 above the 8847360 pixel limit at frame 5\b"):
        list(iter_frames(str(over), 100))
    assert len(list(iter_frames(str(over), 5))) == 5  # the frames before the switch are never the problem


def test_the_torchcodec_source_hands_a_size_switch_to_pyav_with_the_same_reason(tmp_path):
    from videonet.curation.judge.decoders import torchcodec_error, torchcodec_or_pyav_chunks

    if torchcodec_error():
        pytest.skip(f"torchcodec unavailable: {torchcodec_error()}")
    over = switching_mp4(tmp_path / "over.mp4", [(*SMALL, 5), (*OVER_LIMIT, 2)])
    with pytest.raises(DecodeError, match=r"^resolution 4096x2176 above the 8847360 pixel limit at frame 5\b"):
        list(torchcodec_or_pyav_chunks(str(over), 100, 5))


def test_container_durations_that_cannot_be_are_unknown():
    assert plausible_seconds(1e6) == 1e6 and plausible_seconds(0.0) == 0.0
    for value in (1e6 + 1, -0.5, float("inf"), float("-inf"), float("nan")):
        assert plausible_seconds(value) is None


# Local files: bounded in size, opened confined, never blocking.

def _limit_bytes(mb: float) -> int:
    from videonet.curation.judge.fetch import FetchSettings

    return FetchSettings(max_download_mb=mb).max_bytes


def test_a_local_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    from videonet.curation.judge.fetch import FetchSettings

    limits = FetchSettings(max_download_mb=1.0)
    at, over, sparse = tmp_path / "at.mp4", tmp_path / "over.mp4", tmp_path / "sparse.mp4"
    subprocess.run(["truncate", "-s", str(limits.max_bytes), str(at)], check=True)
    subprocess.run(["truncate", "-s", str(limits.max_bytes + 1), str(over)], check=True)
    subprocess.run(["truncate", "-s", "3G", str(sparse)], check=True)
    assert sparse.stat().st_blocks * 512 < 1024 * 1024  # 3 GB that take no room on disk
    with fetched_video(None, str(at), limits) as got:
        assert os.path.getsize(got.path) == limits.max_bytes
    with pytest.raises(FetchError, match=f"file of {limits.max_bytes + 1} bytes exceeds the size limit of "
                                         f"{limits.max_bytes} bytes"):
        with fetched_video(None, str(over), limits):
            pass
    with pytest.raises(FetchError, match="3221225472 bytes exceeds the size limit"):
        with fetched_video(None, str(sparse)):  # the default --max-download-mb, 200
            pass


def _within(seconds: float, work):
    """Run ``work`` in a thread: a FIFO opened for reading would block it forever, not the test."""
    done: dict = {}
    thread = threading.Thread(target=lambda: done.setdefault("result", _outcome(work)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked"
    return done["result"]


def _outcome(work):
    try:
        return work()
    except (FetchError, UserError) as exc:
        return exc


def test_fifos_devices_and_directories_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    (tmp_path / "folder.mp4").mkdir()
    for path in (fifo, tmp_path / "folder.mp4", Path("/dev/zero")):
        refused = _within(10, lambda: open_regular(str(path)))
        assert isinstance(refused, FetchError) and str(refused) == f"not a regular file: {path}"
    fifo_catalog = tmp_path / "catalog.csv"
    os.mkfifo(fifo_catalog)
    refused = _within(10, lambda: CatalogSource(str(fifo_catalog)).prepare())
    assert isinstance(refused, UserError) and "is not a regular file" in str(refused)


def test_curate_refuses_a_fifo_catalog_in_one_line_and_releases_its_run_directory(tmp_path):
    fifo = tmp_path / "catalog.csv"
    os.mkfifo(fifo)
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "videonet", "curate", "--out", str(out), "--source",
                           f"catalog:{fifo}", "--classes", CAT, "--no-progress"],
                          capture_output=True, text=True, timeout=120)  # it blocked forever, holding the lock
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and errors == [f"error: catalog {fifo} is not a regular file (a directory, FIFO "
                                               "or device)"], proc.stderr[-2000:]
    assert not out.exists() or not any(out.iterdir())  # the lock went with the refused run


def test_a_folder_or_file_swapped_for_a_symlink_after_the_catalog_was_read_is_refused(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "clips").mkdir(parents=True)
    outside.mkdir()
    (root / "clips" / "cat.mp4").write_bytes(b"inside")
    (outside / "cat.mp4").write_bytes(b"SECRET")
    hit, reason = validate_row({"title": "Egyptian cat", "path": "clips/cat.mp4"}, str(root), root.resolve())
    assert reason is None  # resolved and checked against the root as the catalog is read
    with fetched_video(None, hit["path"]) as got:
        assert Path(got.path).read_bytes() == b"inside"
    (root / "clips").rename(root / "was_clips")  # the folder becomes a symlink out of the root
    (root / "clips").symlink_to(outside, target_is_directory=True)
    with pytest.raises(FetchError, match=r"^a symlink appeared in the path after the catalog was read \(not "
                                         r"followed\): .*/root/clips/cat\.mp4$"):
        with fetched_video(None, hit["path"]):
            pass
    (root / "clips").unlink()
    (root / "was_clips").rename(root / "clips")
    (root / "clips" / "cat.mp4").unlink()  # the file itself becomes one
    (root / "clips" / "cat.mp4").symlink_to(outside / "cat.mp4")
    with pytest.raises(FetchError, match="a symlink appeared in the path"):
        with fetched_video(None, hit["path"]):
            pass


# A subprocess's peak RSS, in kB. Not getrusage's ru_maxrss: Linux carries into it, at exec, the high-water
# mark of the address space the child was forked (vforked) from, so a child of this test process would
# report this process's peak (several GB while it encodes a bomb) as its own. VmHWM starts afresh at exec.
PEAK = ("def peak_kb():\n"
        "    with open('/proc/self/status') as status:\n"
        "        return int(next(line.split()[1] for line in status if line.startswith('VmHWM:')))\n")


def test_the_shard_writer_streams_a_large_clip_instead_of_holding_it(tmp_path):
    """A 192 MB clip through the shard writer raises the writer's peak memory by far less than the clip."""
    clip = tmp_path / "clip.mp4"
    subprocess.run(["truncate", "-s", "192M", str(clip)], check=True)
    script = PEAK + (
        "import json, sys\n"
        "from videonet.curation.write.shards import write_shard\n"
        "before = peak_kb()\n"
        "row = {'key': 'n02124075_0123456789abcdef', 'id': 'big', 'path': sys.argv[1]}\n"
        "write_shard(sys.argv[2], [row], 'part', sys.argv[3])\n"
        "print(json.dumps({'grew_kb': peak_kb() - before}))\n")
    shard = tmp_path / "part.tar"
    proc = subprocess.run([sys.executable, "-c", script, str(clip.resolve()), str(shard), str(tmp_path / "_work")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    grew_mb = json.loads(proc.stdout.splitlines()[-1])["grew_kb"] / 1024
    assert grew_mb < 48, f"the writer's peak grew by {grew_mb:.0f} MB for a 192 MB clip"
    import tarfile

    with tarfile.open(shard) as tar:
        sizes = {m.name: m.size for m in tar.getmembers()}
    assert sizes["n02124075_0123456789abcdef.mp4"] == 192 * 1024 * 1024
    assert set(sizes) == {"n02124075_0123456789abcdef.json", "n02124075_0123456789abcdef.mp4"}


# Catalog rows: one bad row is one audit row.

def _catalog(tmp_path: Path, rows: list[dict], name: str = "catalog.csv") -> CatalogSource:
    (tmp_path / "cat.mp4").write_bytes(b"x")
    path = tmp_path / name
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "title", "path", "duration"])
        writer.writeheader()
        writer.writerows(rows)
    return CatalogSource(str(path), root=str(tmp_path))


def _refused(source: CatalogSource, ids: list) -> dict:
    """id -> reason of each refused row (csv rows are numbered by file line: the header is line 1)."""
    refused = {}
    for row in source.invalid_rows():
        prefix = f"catalog row {row['row']}: "
        assert row["reason"].startswith(prefix)
        refused[ids[row["row"] - 2]] = row["reason"][len(prefix):]
    return refused


def test_each_bad_row_is_refused_alone_with_its_reason(tmp_path):
    good = {"id": "good", "title": "Egyptian cat", "path": "cat.mp4", "duration": "12"}
    rows = [
        good,
        {"id": "nul", "title": "cat with a NUL", "path": "cat\0.mp4"},
        {"id": "nul-title", "title": "cat\0 title", "path": "cat.mp4"},
        {"id": "long", "title": "cat " + "x" * 200_000, "path": "cat.mp4"},  # over the csv module's 128 KiB
        {"id": "at-limit", "title": "c" * MAX_FIELD_CHARS, "path": "cat.mp4"},
        {"id": "over-limit", "title": "d" * (MAX_FIELD_CHARS + 1), "path": "cat.mp4"},
        {"id": "inf", "title": "cat forever", "path": "cat.mp4", "duration": "inf"},
        {"id": "nan", "title": "cat of no length", "path": "cat.mp4", "duration": "NaN"},
        {"id": "negative", "title": "cat backwards", "path": "cat.mp4", "duration": "-1"},
        {"id": "absurd", "title": "cat for 31 years", "path": "cat.mp4", "duration": "1e9"},
        {"id": "max", "title": "cat for 11 days", "path": "cat.mp4", "duration": "1000000"},
        {"id": "just-over", "title": "cat for 11 days+", "path": "cat.mp4", "duration": "1000000.5"},
    ]
    source = _catalog(tmp_path, rows)
    assert _refused(source, [r["id"] for r in rows]) == {  # the others (good, at-limit, max) are hits
        "nul": "path contains a NUL byte",
        "nul-title": "title contains a NUL byte",
        "long": "title is 200004 characters long (at most 4096)",
        "over-limit": "title is 4097 characters long (at most 4096)",
        "inf": "duration is not a finite number: inf",
        "nan": "duration is not a finite number: nan",
        "negative": "negative duration: -1",
        "absurd": "duration 1e+09 s is not plausible (over 1e+06 s)",
        "just-over": "duration 1e+06 s is not plausible (over 1e+06 s)",
    }


def test_wrong_types_in_a_jsonl_catalog_are_refused_per_row(tmp_path):
    (tmp_path / "cat.mp4").write_bytes(b"x")
    lines = [{"id": 7, "title": "Egyptian cat", "path": "cat.mp4"},  # an integer id is an id
             {"id": "list", "title": ["Egyptian", "cat"], "path": "cat.mp4"},
             {"id": "object-path", "title": "Egyptian cat", "path": {"file": "cat.mp4"}},
             {"id": True, "title": "Egyptian cat", "path": "cat.mp4"},
             {"id": "bool-duration", "title": "Egyptian cat", "path": "cat.mp4", "duration": True},
             {"id": "number-title", "title": 1984, "path": "cat.mp4"}]
    path = tmp_path / "catalog.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    refused = CatalogSource(str(path), root=str(tmp_path)).invalid_rows()  # jsonl rows: numbered by line
    assert [r["reason"] for r in refused] == [  # line 1, the integer id, is a hit
        "catalog row 2: title is not text (list)", "catalog row 3: path is not text (dict)",
        "catalog row 4: id is not text (bool)", "catalog row 5: duration is not a number: True",
        "catalog row 6: title is not text (int)"]


def test_a_catalog_without_its_columns_or_usable_rows_is_one_line(tmp_path):
    (tmp_path / "cat.mp4").write_bytes(b"x")
    (tmp_path / "names.csv").write_text("name,path\nEgyptian cat,cat.mp4\n")
    with pytest.raises(UserError, match=r"names\.csv needs a title column and a path or url column \(it has: name, "
                                        r"path\)$"):
        CatalogSource(str(tmp_path / "names.csv")).prepare()
    (tmp_path / "titles.csv").write_text("title,duration\nEgyptian cat,12\n")
    with pytest.raises(UserError, match="needs a title column and a path or url column"):
        CatalogSource(str(tmp_path / "titles.csv")).prepare()
    (tmp_path / "outside.csv").write_text("title,path\nEgyptian cat,/etc/hostname\nTabby cat,../x.mp4\n")
    with pytest.raises(UserError, match=r"outside\.csv: none of its 2 rows can be used \(row 2: path escapes "
                                        r"--catalog-root: /etc/hostname\)$"):
        CatalogSource(str(tmp_path / "outside.csv"), root=str(tmp_path)).prepare()
    (tmp_path / "one.csv").write_text("title,path\nEgyptian cat,/etc/hostname\nTabby cat,cat.mp4\n")
    CatalogSource(str(tmp_path / "one.csv"), root=str(tmp_path)).prepare()  # one usable row is a catalog


def test_text_for_a_terminal_has_its_control_characters_escaped():
    hostile = "cat \x1b[31mred\x1b]0;pwned\x07 \x9b2J\nnext\u202eevil\ttab é 猫"
    shown = printable(hostile)
    assert shown == "cat \\x1b[31mred\\x1b]0;pwned\\x07 \\x9b2J\\nnext\\u202eevil\\ttab é 猫"
    assert shown.isprintable()


# The pipeline over hostile input, in a subprocess whose peak memory is measured.

MEASURED = PEAK + ("import sys\n"
                   "from videonet.cli import main\n"
                   "sys.argv = ['videonet', *sys.argv[1:]]\n"
                   "try:\n"
                   "    main()\n"
                   "finally:\n"
                   "    print(f'peak_kb {peak_kb()}', file=sys.stderr)\n")
SHARD_SIZE = 2
MAX_DOWNLOAD_MB = 200.0  # the default


@pytest.fixture(scope="module")
def hostile_run(demo_dir, tmp_path_factory):
    """Four decoder bombs, a valid clip with a 3 GB sparse tail, a good clip whose title holds terminal
    escapes, and rows with a NUL byte, a 200 KB title and an infinite duration: one curation."""
    root = tmp_path_factory.mktemp("hostile_root")
    for folder in ("good", "bombs", "sparse"):
        (root / folder).mkdir()
    shutil.copyfile(demo_dir / "chelsea_cat.mp4", root / "good" / "cat.mp4")
    switching_mp4(root / "bombs" / "bomb0.mp4", [(*SMALL, 5), (*BOMB, 2)])
    for n in range(1, 4):
        shutil.copyfile(root / "bombs" / "bomb0.mp4", root / "bombs" / f"bomb{n}.mp4")
    shutil.copyfile(demo_dir / "chelsea_cat.mp4", root / "sparse" / "cat_3g.mp4")
    subprocess.run(["truncate", "-s", "3G", str(root / "sparse" / "cat_3g.mp4")], check=True)
    rows = [{"id": "good-cat", "title": "Egyptian cat \x1b]0;pwned\x07\x1b[31m at home", "path": "good/cat.mp4",
             "duration": "12"},
            *({"id": f"bomb-{n}", "title": f"Egyptian cat bomb {n}", "path": f"bombs/bomb{n}.mp4"} for n in range(4)),
            {"id": "sparse-tail", "title": "Egyptian cat with a long tail", "path": "sparse/cat_3g.mp4"},
            {"id": "nul-path", "title": "Egyptian cat NUL", "path": "good/cat\0.mp4"},
            {"id": "long-title", "title": "Egyptian cat " + "x" * 200_000, "path": "good/cat.mp4"},
            {"id": "forever", "title": "Egyptian cat forever", "path": "good/cat.mp4", "duration": "inf"}]
    catalog = root / "catalog.csv"
    with catalog.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "title", "path", "duration"])
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path_factory.mktemp("hostile_out") / "run"
    args = ["curate", "--out", str(out), "--source", f"catalog:{catalog}", "--catalog-root", str(root),
            "--classes", CAT, "--classifier", "efficientnet-lite0", "--device", "cpu", "--frames", "20",
            "--chunk", "10", "--shard-size", str(SHARD_SIZE), "--no-progress"]
    proc = subprocess.run([sys.executable, "-c", MEASURED, *args], capture_output=True, text=True, timeout=900)
    peak_kb = int(proc.stderr.rsplit("peak_kb ", 1)[1].split()[0])
    return {"out": out, "proc": proc, "peak_gb": peak_kb / 1024 ** 2, "root": root}


@pytest.mark.slow
def test_decoder_bombs_and_a_sparse_giant_cost_neither_memory_nor_the_good_clip(hostile_run):
    from videonet.curation.rundir.files import final_rows, read_audit, read_metadata, shard_paths

    proc, out = hostile_run["proc"], hostile_run["out"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"\nhostile run peak: {hostile_run['peak_gb']:.2f} GB")
    assert hostile_run["peak_gb"] < 3.0
    metadata = read_metadata(str(out))
    assert list(metadata["id"]) == ["good-cat"]  # kept once
    audit = final_rows(read_audit(str(out)))
    rows = {ident: (status, reason) for ident, status, reason in zip(audit["id"], audit["status"], audit["reason"])}
    assert audit["id"].is_unique  # nothing twice
    for n in range(4):
        assert rows[f"bomb-{n}"] == ("decode_error", "resolution 16000x16000 above the 8847360 pixel limit at "
                                                     "frame 5 (the stream changed size)")
    assert rows["sparse-tail"][0] == "download_error"
    assert rows["sparse-tail"][1].startswith("file of 3221225472 bytes exceeds the size limit of 209715200 bytes")
    invalid = {reason for status, reason in rows.values() if status == "invalid_catalog_row"}
    assert invalid == {"catalog row 8: path contains a NUL byte",
                       "catalog row 9: title is 200013 characters long (at most 4096)",
                       "catalog row 10: duration is not a finite number: inf"}
    assert rows["good-cat"][0] == "kept"
    assert len(rows) == 9  # every row of the catalog, once
    bound = SHARD_SIZE * MAX_DOWNLOAD_MB * 1024 * 1024
    sizes = [os.path.getsize(p) for p in shard_paths(str(out))]
    assert len(sizes) == 1 and sizes[0] < bound
    assert sizes[0] < os.path.getsize(hostile_run["root"] / "good" / "cat.mp4") + 64 * 1024


@pytest.mark.slow
def test_the_hostile_runs_summary_is_strict_json_and_show_escapes_its_title(hostile_run):
    out = hostile_run["out"]
    assert hostile_run["proc"].returncode == 0
    facts = json.loads((out / "report" / "summary.json").read_text(),
                       parse_constant=lambda name: pytest.fail(f"summary.json holds {name}"))
    assert facts["kept"] == 1 and facts["hours_kept"] == round(12.0 / 3600, 3)
    proc = subprocess.run([sys.executable, "-m", "videonet", "show", str(out), "good-cat"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout
    assert "Egyptian cat \\x1b]0;pwned\\x07\\x1b[31m at home" in proc.stdout
