"""Judge: fetch each candidate clip, probe it, classify its first frames and decide per query class.

``fetch`` (catalog files, remote files, yt-dlp downloads) -> ``frames`` (PyAV decode at classifier
size) or ``decoders`` (the choice of source; torchcodec's NVDEC with the resize on the GPU) -> ``scan``
(batched per-frame top-1, early exit) with ``classifier`` (+ ``models/`` registry,
``cpu_graph`` fast path) -> ``verdicts`` (the keep rule, typed results, the scan cache).
"""
