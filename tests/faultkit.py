"""A hostile catalog made for real: broken files, failing URLs, malformed rows, shell metacharacters.

Shared by ``tests/test_faults.py`` and ``benchmarks/faults.py``. :func:`build` writes, under one
directory, copies of the two good demo clips (an Egyptian cat and an espresso), every fault of the
fault suite (made with PyAV/numpy, not mocked), a local HTTP server's files, and two catalogs:
``clean.csv`` (good clips only) and ``faults.csv`` (the good clips plus every fault). Each fault
carries the audit status and the reason pattern it must get; :func:`check` compares a finished
run with them and with the clean run.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from localserver import Handler

CAT, ESPRESSO, GOLDFISH = "n02124075", "n07920052", "n01443537"
GOOD_CLASSES = f"{CAT},{ESPRESSO}"
FAULT_CLASSES = f"{CAT},{ESPRESSO},{GOLDFISH}"  # goldfish: a class no title matches
FIELDS = ["id", "title", "path", "url", "duration"]
DOWNLOAD_TIMEOUT_S = 15.0  # --download-timeout of the fault runs (the trickling server must hit it)
MAX_DOWNLOAD_MB = 2.0  # --max-download-mb of the fault runs (the endless server must hit it)
HUGE = (8192, 4608)  # above frames.MAX_PIXELS


@dataclass
class Fault:
    """One catalog row and what the run must say about it."""

    name: str
    expected: str  # audit status
    reason: str  # regex the audit reason must match
    wnid: str | None = None  # class of the audit row (None for invalid catalog rows)
    id: str | None = None  # audit id (``row:N`` for invalid rows)
    row: dict = field(default_factory=dict)


@dataclass
class Kit:
    root: Path  # --catalog-root
    clean: Path  # catalog of good clips only (the two good clips of faults.csv and more)
    faults_csv: Path  # catalog of the good clips and every fault
    faults: list[Fault]
    canary: Path  # must never exist: a shell would have created it
    good_ids: list[str]


class FaultHandler(Handler):
    """The local web of tests/localserver.py plus servers that stall and that never stop sending."""

    def do_GET(self):
        if self.path.startswith("/trickle.mp4"):  # promises 1 MB (under the size limit), sends 5 bytes/s
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(1_000_000))
            self.end_headers()
            return self._send(lambda: b"\0", pause=0.2, limit=120.0)
        if self.path.startswith("/endless.mp4"):  # no Content-Length, bytes until the client hangs up
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.end_headers()
            block = bytes(256 * 1024)
            return self._send(lambda: block, pause=0.0, limit=120.0)
        return super().do_GET()

    def _send(self, chunk, pause: float, limit: float) -> None:
        started = time.monotonic()
        try:
            while time.monotonic() - started < limit and not self.server.stopping.is_set():
                self.wfile.write(chunk())
                self.wfile.flush()
                if pause:
                    self.server.stopping.wait(pause)
        except OSError:  # the downloader gave up (killed or size limit): that is the point
            pass
        self.close_connection = True


def serve(directory: Path):
    """Start the fault server on 127.0.0.1; returns (base_url, stop)."""
    from functools import partial
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(FaultHandler, directory=str(directory)))
    server.stopping = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop():
        server.stopping.set()
        server.shutdown()
        server.server_close()

    return f"http://127.0.0.1:{server.server_address[1]}", stop


def _encode(path: Path, frames, size: tuple[int, int], rate, pts=None, time_base=None) -> None:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        if time_base is not None:
            stream.codec_context.time_base = time_base
        for i, frame in enumerate(frames):
            if pts is not None:
                frame.pts = pts[i]
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _rgb_frames(images, size):
    import av

    for image in images:
        yield av.VideoFrame.from_ndarray(image, format="rgb24").reformat(width=size[0], height=size[1],
                                                                        format="yuv420p")


def make_huge(path: Path) -> None:
    """One grey 8192x4608 frame lasting 12 s: long enough to pass the duration rule, too big to decode."""
    import av

    frame = av.VideoFrame(HUGE[0], HUGE[1], "yuv420p")
    for plane in frame.planes:
        plane.update(bytes([128]) * plane.buffer_size)
    frame.pts = 0
    _encode(path, [frame], HUGE, Fraction(1, 12))


def make_vfr(path: Path) -> None:
    """The cat photo as a 12.6 s clip whose frame intervals vary from 40 to 250 ms."""
    from skimage.data import chelsea

    from videonet.curation.search.demo import pan_zoom_frames

    steps = [40, 60, 250, 150, 40, 100]  # ms; mean 106.7
    pts = np.concatenate([[0], np.cumsum([steps[i % len(steps)] for i in range(119)])]).tolist()
    _encode(path, _rgb_frames(pan_zoom_frames(chelsea(), 12.0), (320, 240)), (320, 240), Fraction(10),
            pts=pts, time_base=Fraction(1, 1000))


def make_audio_only(path: Path, seconds: float = 12.0) -> None:
    """A real AAC track (a 440 Hz tone) in an mp4 with no video stream."""
    import av

    rate = 22050
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)).astype(np.float32)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=rate)
        for start in range(0, len(tone), 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def make_faststart(source: Path, path: Path) -> None:
    """Remux with the index ('moov') first, as web videos are: a cut-off copy still opens."""
    import av

    with av.open(str(source)) as src, av.open(str(path), "w", options={"movflags": "faststart"}) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)


def write_catalog(path: Path, rows: list[dict]) -> None:
    """CSV with raw bytes where a title holds surrogate escapes (invalid UTF-8 on disk)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=FIELDS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in FIELDS})
    path.write_bytes(text.getvalue().encode("utf-8", "surrogateescape"))


def build(directory: Path, demo_dir: Path, base_url: str, www: Path) -> Kit:
    """Write the clips, the faults and both catalogs under ``directory``; files served from ``www``."""
    root = directory / "root"
    (root / "good").mkdir(parents=True, exist_ok=True)
    bad = root / "bad"
    bad.mkdir(exist_ok=True)
    outside = directory / "outside"
    outside.mkdir(exist_ok=True)
    cat, coffee = root / "good" / "chelsea_cat.mp4", root / "good" / "coffee_cup.mp4"
    shutil.copyfile(demo_dir / "chelsea_cat.mp4", cat)
    shutil.copyfile(demo_dir / "coffee_cup.mp4", coffee)
    shutil.copyfile(demo_dir / "chelsea_cat.mp4", outside / "secret.mp4")
    shutil.copyfile(demo_dir / "chelsea_cat.mp4", www / "cat.mp4")
    canary = directory / "PWNED"
    good_bytes = cat.read_bytes()
    rng = np.random.default_rng(8)

    good = [
        {"id": "good-cat", "title": "Chelsea the Egyptian cat relaxing at home", "path": "good/chelsea_cat.mp4",
         "duration": 12.0},
        {"id": "good-espresso", "title": "Morning espresso in my favourite cup", "path": "good/coffee_cup.mp4",
         "duration": 12.0},
    ]
    # More good videos for the clean catalog (the SIGKILL test wants several shards): copies, and a
    # title that retrieves the cat for espresso (an ordinary rejection, not a fault).
    more = []
    for n in (2, 3):
        shutil.copyfile(cat, root / "good" / f"cat{n}.mp4")
        shutil.copyfile(coffee, root / "good" / f"coffee{n}.mp4")
        more += [{"id": f"cat-{n}", "title": f"Egyptian cat, video {n}", "path": f"good/cat{n}.mp4"},
                 {"id": f"espresso-{n}", "title": f"Espresso shot, video {n}", "path": f"good/coffee{n}.mp4"}]
    more.append({"id": "cat-as-espresso", "title": "Espresso with my cat", "path": "good/cat2.mp4"})
    faults: list[Fault] = []

    def clip(name, expected, reason, wnid=CAT, title=None, **row):
        ident = f"fault-{name}"
        title = title or f"Egyptian cat fault: {name}"
        faults.append(Fault(name, expected, reason, wnid, ident, {"id": ident, "title": title, **row}))

    # Broken files (the status comes from probing/decoding the real bytes)
    (bad / "random.mp4").write_bytes(rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    clip("corrupt container (random bytes)", "decode_error", r"cannot open container", path="bad/random.mp4")
    corrupt = bytearray(good_bytes)
    corrupt[len(corrupt) // 10:len(corrupt) * 6 // 10] = rng.integers(0, 256, len(corrupt) // 2, dtype=np.uint8).tobytes()
    (bad / "corrupt_payload.mp4").write_bytes(bytes(corrupt))
    clip("corrupt video payload (index intact)", "decode_error", r"corrupt video stream after \d+ frames",
         path="bad/corrupt_payload.mp4")
    (bad / "truncated.mp4").write_bytes(good_bytes[:len(good_bytes) // 2])
    clip("truncated mp4 (index at the end, cut off)", "decode_error", r"cannot open container",
         path="bad/truncated.mp4")
    make_faststart(cat, bad / "faststart.mp4")
    fast = (bad / "faststart.mp4").read_bytes()
    (bad / "truncated_faststart.mp4").write_bytes(fast[:len(fast) * 6 // 10])
    (bad / "faststart.mp4").unlink()
    clip("truncated mp4 (index first, cut off at 60%)", "decode_error", r"truncated file: header lists 120",
         path="bad/truncated_faststart.mp4")
    (bad / "empty.mp4").write_bytes(b"")
    clip("zero-byte file", "decode_error", r"cannot open container", path="bad/empty.mp4")
    make_audio_only(bad / "audio_only.mp4")
    clip("audio-only mp4 (AAC)", "decode_error", r"no video stream", path="bad/audio_only.mp4")
    make_huge(bad / "huge.mp4")
    clip(f"huge resolution {HUGE[0]}x{HUGE[1]}", "decode_error", rf"resolution {HUGE[0]}x{HUGE[1]} above",
         path="bad/huge.mp4")
    make_vfr(bad / "vfr.mp4")
    clip("variable frame rate (40-250 ms frame intervals)", "kept", r"class top-1", path="bad/vfr.mp4",
         title="Egyptian cat filmed at a variable frame rate")
    (bad / "page.mp4").write_bytes(b"<html><body>404 video not found</body></html>")
    clip("html page saved as .mp4", "decode_error", r"cannot open container", path="bad/page.mp4")

    # Paths that cannot be read (root reads a chmod 000 file, so those need other means)
    (bad / "a_directory.mp4").mkdir(exist_ok=True)
    clip("path is a directory", "download_error", r"not a regular file", path="bad/a_directory.mp4")
    link = bad / "dangling.mp4"
    if link.is_symlink():
        link.unlink()
    link.symlink_to(bad / "deleted_target.mp4")
    # the catalog path is resolved (symlinks followed, to check the root), so the target is reported
    clip("dangling symlink", "download_error", r"file not found: .*deleted_target\.mp4", path="bad/dangling.mp4")
    clip("missing file", "download_error", r"file not found", path="bad/never_written.mp4")
    (bad / "plain_file").write_bytes(b"x")
    clip("path through a file (ENOTDIR)", "download_error", r"file not found", path="bad/plain_file/clip.mp4")
    if os.geteuid() != 0:
        locked = bad / "locked.mp4"
        shutil.copyfile(cat, locked)
        locked.chmod(0)
        clip("chmod 000 file", "download_error", r"file not readable", path="bad/locked.mp4")

    # URLs on the local server
    clip("HTTP 404", "download_error", r"404", url=f"{base_url}/status/404", duration=30)
    # 5xx and timeouts are retriable: audited so that a rerun tries them again (the fault runs try once)
    clip("HTTP 500", "download_retriable", r"500", url=f"{base_url}/status/500", duration=30)
    clip("HTTP server trickling 5 bytes/s (timeout)", "download_retriable", r"took longer than", url=f"{base_url}/trickle.mp4",
         duration=30)
    clip("HTTP endless body, no Content-Length (size limit)", "download_error", r"size limit",
         url=f"{base_url}/endless.mp4", duration=30)

    # Shell metacharacters: in a title, a file name and a URL (a shell would create the canary)
    shell = f"$(touch {canary}); `touch {canary}` | touch {canary} && echo > {canary}"
    evil_name = f"cat $(touch {canary.name}); `id` | & echo '\"x\".mp4"
    shutil.copyfile(cat, root / "good" / evil_name)
    clip("shell metacharacters in title and file name", "kept", r"class top-1", path=f"good/{evil_name}",
         title=f"Egyptian cat {shell}")
    clip("shell metacharacters in a URL", "kept", r"class top-1",
         url=f"{base_url}/cat.mp4?q=$(touch%20{canary})&x=`id`;echo", title=f"Egyptian cat video {shell}")

    # Malformed catalog rows (reported once, not per class)
    def invalid(name, reason, **row):
        faults.append(Fault(name, "invalid_catalog_row", reason, None, None, row))

    invalid("missing title", r"missing title", id="bad-no-title", path="good/chelsea_cat.mp4")
    invalid("blank title", r"missing title", id="bad-blank-title", title="   ", path="good/chelsea_cat.mp4")
    invalid("non-UTF-8 title", r"not valid UTF-8", id="bad-utf8", title="Egyptian cat \udcff\udcfe clip",
            path="good/chelsea_cat.mp4")
    invalid("non-UTF-8 path", r"path is not valid UTF-8", id="bad-utf8-path", title="Egyptian cat",
            path="good/chelsea\udcff.mp4")
    invalid("duplicate id", r"duplicate id 'good-cat'", id="good-cat", title="Egyptian cat, another video",
            path="bad/vfr.mp4")
    invalid("negative duration", r"negative duration", id="bad-negative", title="Egyptian cat backwards",
            path="good/chelsea_cat.mp4", duration=-12)
    invalid("duration not a number", r"duration is not a number", id="bad-duration", title="Egyptian cat",
            path="good/chelsea_cat.mp4", duration="twelve seconds")
    invalid("neither url nor path", r"neither url nor path", id="bad-nothing", title="Egyptian cat")
    invalid("file:// URL", r"url scheme not allowed", id="bad-file-url", title="Egyptian cat",
            url=f"file://{cat}")
    invalid("ftp:// URL", r"url scheme not allowed", id="bad-ftp-url", title="Egyptian cat",
            url="ftp://127.0.0.1/cat.mp4")
    invalid("javascript: URL", r"url scheme not allowed", id="bad-js-url", title="Egyptian cat",
            url="javascript:alert(document.cookie)")
    invalid("path escaping --catalog-root (..)", r"escapes --catalog-root", id="bad-dotdot", title="Egyptian cat",
            path="../outside/secret.mp4")
    invalid("absolute path outside --catalog-root", r"escapes --catalog-root", id="bad-absolute",
            title="Egyptian cat", path=str(outside / "secret.mp4"))
    escape = root / "good" / "escape.mp4"
    if escape.is_symlink():
        escape.unlink()
    escape.symlink_to(outside / "secret.mp4")
    invalid("symlink inside the root pointing outside", r"escapes --catalog-root", id="bad-symlink",
            title="Egyptian cat", path="good/escape.mp4")
    invalid("remote-scheme path with a local --catalog-root", r"escapes --catalog-root", id="bad-remote",
            title="Egyptian cat", path="file:///etc/passwd")

    rows = list(good)
    for fault in faults:
        rows.append(fault.row)
        if fault.expected == "invalid_catalog_row":
            fault.id = f"row:{len(rows) + 1}"  # csv rows are counted as file lines (header is line 1)
    clean, faults_csv = root / "clean.csv", root / "faults.csv"
    write_catalog(clean, good + more)
    write_catalog(faults_csv, rows)
    expected_good = [Fault("good clip: " + g["title"], "kept", r"class top-1", CAT if "cat" in g["id"] else ESPRESSO,
                           g["id"], g) for g in good]
    return Kit(root, clean, faults_csv, expected_good + faults, canary, [g["id"] for g in good])


def options(out: Path, kit: Kit, catalog: Path, classes: str, **overrides):
    """The curate options of the fault runs (the offline classifier, few frames, tight limits)."""
    from videonet.curation.settings import CurateSettings

    settings = dict(source=f"catalog:{catalog}", catalog_root=str(kit.root), classes=classes,
                    classifier="efficientnet-lite0", device="cpu", frames=20, chunk=10, clip_batch=1,
                    shard_size=1, progress=False, max_download_mb=MAX_DOWNLOAD_MB,
                    download_timeout=DOWNLOAD_TIMEOUT_S, decode_timeout=60.0, retry_attempts=1)
    settings.update(overrides)
    return str(out), CurateSettings.of(**settings)


def cli_args(out: Path, kit: Kit, catalog: Path, classes: str) -> list[str]:
    """The same run as :func:`options`, as ``python -m videonet curate`` arguments."""
    run_dir, o = options(out, kit, catalog, classes)
    return ["curate", "--out", run_dir, "--source", o.search.source, "--catalog-root", o.search.catalog_root,
            "--classes", classes, "--classifier", o.classifier.classifier, "--device", o.classifier.device,
            "--frames", str(o.judge.frames), "--chunk", str(o.judge.chunk), "--clip-batch", str(o.judge.clip_batch),
            "--shard-size", str(o.write.shard_size), "--no-progress",
            "--max-download-mb", str(o.fetch.max_download_mb), "--download-timeout", str(o.fetch.download_timeout),
            "--retry-attempts", str(o.client.retry_attempts),
            "--decode-timeout", str(o.judge.decode_timeout)]


KEPT_FIELDS = ["id", "wnid", "key", "frames_classified", "matched_frames", "first_match", "frames_decoded"]


def check(out: Path, kit: Kit, clean_out: Path | None, crashed: str | None = None) -> tuple[list[dict], dict]:
    """One result row per fault (expected vs got) and the summary counts of the fault suite."""
    from videonet.curation.rundir.files import read_audit, read_metadata

    audit = read_audit(str(out)) if not crashed else None
    metadata = read_metadata(str(out)) if not crashed else None
    results = []
    for fault in kit.faults:
        got, reason = "crash" if crashed else "missing", crashed or ""
        if audit is not None:
            rows = audit[(audit["id"] == fault.id) & (audit["status"] != "duplicate")]
            if fault.wnid is not None:
                rows = rows[rows["wnid"] == fault.wnid]
            if len(rows) == 1:
                got, reason = rows.iloc[0]["status"], rows.iloc[0]["reason"] or ""
            elif len(rows) > 1:
                got, reason = "duplicated", f"{len(rows)} audit rows"
        ok = got == fault.expected and bool(re.search(fault.reason, reason))
        results.append({"fault": fault.name, "expected": fault.expected, "got": got, "reason": reason, "ok": ok})
    summary = {"faults tried": len(kit.faults) - len(kit.good_ids), "crashes": int(bool(crashed)),
               "kept clips lost": len(kit.good_ids), "clips duplicated": 0, "audit rows without a reason": 0,
               "wrong status or reason": sum(not r["ok"] for r in results)}
    if crashed:
        return results, summary
    summary["audit rows without a reason"] = int((audit["reason"].fillna("").str.strip() == "").sum())
    keys = [f"{w}/{i}" for w, i in zip(audit["wnid"].fillna(""), audit["id"])]
    summary["clips duplicated"] = (len(keys) - len(set(keys)) - int((audit["status"] == "duplicate").sum())
                                   + len(metadata) - metadata["key"].nunique())
    if clean_out is not None:
        reference = read_metadata(str(clean_out)).set_index("id").reindex(kit.good_ids)  # both catalogs have them
        mine = metadata.set_index("id")
        lost = 0
        for ident, row in reference.iterrows():
            same = ident in mine.index and all(mine.loc[ident, f] == row[f] for f in KEPT_FIELDS if f != "id") \
                and abs(mine.loc[ident, "top1_score"] - row["top1_score"]) < 1e-4
            lost += not same
        summary["kept clips lost"] = lost
    return results, summary


def format_table(results: list[dict], summary: dict) -> str:
    """The fault table, then one line per summary count, then the ratio of faults handled as expected."""
    width = max(len(r["fault"]) for r in results)
    lines = [f"{'fault':<{width}}  {'expected':<19}  {'got':<19}  reason", "-" * (width + 80)]
    for r in results:
        mark = "" if r["ok"] else "   <-- UNEXPECTED"
        lines.append(f"{r['fault']:<{width}}  {r['expected']:<19}  {r['got']:<19}  {r['reason'][:90]}{mark}")
    lines.append("")
    lines += [f"{k}: {v}" for k, v in summary.items()]
    handled = sum(r["ok"] for r in results)
    lines.append(f"faults handled as expected: {handled}/{len(results)} ({100.0 * handled / len(results):.1f}%)")
    return "\n".join(lines)


# --- what a reader of a run directory sees, for the kill-and-resume tests -----------------------------

def snapshot(out: Path) -> dict:
    """What a reader sees: kept clips by key (bytes + metadata), audit verdicts, the retention table."""
    import pandas as pd

    from videonet.curation.rundir.files import read_audit, read_metadata, read_shard, shard_paths

    metadata = read_metadata(str(out))
    samples = {}
    for path in shard_paths(str(out)):
        for key, parts in read_shard(path).items():
            assert key not in samples, f"{key} in two shards"
            meta = pd.read_json(pd.io.common.StringIO(parts["json"].decode()), typ="series")
            samples[key] = (parts["mp4"], meta.drop(["shard", "run_id"]).to_dict())
    audit = read_audit(str(out))
    verdicts = sorted(map(tuple, audit[["wnid", "id", "status", "reason"]].fillna("").itertuples(index=False)))
    retention = pd.read_csv(out / "report" / "retention.csv", keep_default_na=False)
    return {"keys": sorted(metadata["key"]), "unique": metadata["key"].is_unique, "samples": samples,
            "verdicts": verdicts, "retention": retention.to_dict("records"),
            "shards": len(shard_paths(str(out))), "kept": len(metadata)}


def assert_resumed_like(out: Path, expected: dict) -> None:
    """A killed-then-rerun run directory holds what the uninterrupted run holds, and nothing half-written."""
    got = snapshot(out)
    assert got["unique"] and got["keys"] == expected["keys"]  # nothing lost, nothing twice
    assert got["samples"] == expected["samples"]
    assert got["verdicts"] == expected["verdicts"], (
        f"only after the kill: {sorted(set(got['verdicts']) - set(expected['verdicts']))}; "
        f"only uninterrupted: {sorted(set(expected['verdicts']) - set(got['verdicts']))}")
    assert got["retention"] == expected["retention"]
    assert not [p for p in out.rglob("*") if ".tmp" in p.name or "beam-temp" in p.name]
