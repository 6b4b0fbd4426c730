"""Write: kept clips into WebDataset shards + Parquet metadata, every candidate into the audit.

``records`` defines the row types and their Parquet schemas; ``rundir`` the run directory's layout,
its atomic shard commits and recovery after a kill.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WriteSettings:
    """How kept clips are grouped into shards."""

    shard_size: int = field(default=100, metadata={"help": "Kept clips per WebDataset/Parquet shard.", "min": 1})
    shard_writers: int = field(default=0, metadata={
        "help": "Parallel shard writers (0: 1 locally, 32 on distributed runners).", "min": 0})
    trainer_copy: bool = field(default=False, metadata={
        "help": "Also store a trainer-ready copy of each kept clip in its shard (<key>.train.mp4: short side 288, "
                "a keyframe every 0.5 s, same frame times; the original is kept). `videonet train` reads it "
                "instead: ~3x the views per loader core (benchmarks/README.md, loader)."})
