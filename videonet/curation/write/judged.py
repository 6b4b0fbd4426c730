"""What the judge decided about each clip, put on disk: the staged download of a kept clip (read by
the shard writer), the scan cache (a rerun after a kill neither fetches nor classifies the clip
again), the frames behind the verdicts, and the download stage's spent files."""

from __future__ import annotations

import shutil

from apache_beam.io.filesystems import FileSystems

from videonet.curation.judge.verdicts import Judged
from videonet.curation.rundir import cache_path, staging_path
from videonet.curation.rundir.files import publish, write_atomic
from videonet.curation.write.thumbs import write_thumb


def write_judged(out: str, judged: Judged) -> list[dict]:
    """Write what ``judged`` asks for into the run directory ``out``; returns its verdict rows. The
    staged copy comes first: a kept row names it, and the cache says the clip needs no new fetch."""
    if judged.stage is not None:
        target = staging_path(out, judged.identity)
        with open(judged.stage, "rb") as source, FileSystems.create(target + ".tmp") as sink:
            shutil.copyfileobj(source, sink, length=8 * 1024 * 1024)
        publish(target + ".tmp", target)
    if judged.cache is not None:
        write_atomic(cache_path(out, judged.identity), judged.cache)
    for thumb in judged.thumbs:
        write_thumb(out, thumb)
    if judged.drop is not None and FileSystems.exists(judged.drop):
        FileSystems.delete([judged.drop])
    return judged.rows
