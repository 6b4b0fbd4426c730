"""Curation: the VideoNet procedure as stages, one home each, in the order data flows.

vocabulary/ (classes + WordNet terms) -> search/ (sources: youtube, catalog, demo) ->
candidates (title match, dedup + cap, duration) -> judge/ (fetch, frames, scan, classifier,
verdicts) -> write/ (records, run directory, shards, thumbnails) -> report/ (tables, report.html,
``videonet show``). ``client`` is how search and fetch reach a video site (options, failure classes,
pacing, retries). ``settings`` gathers every stage's settings and the run's state (no Beam: the command line reads
it); ``run`` is the driver above the Beam graph that wires the stages (``videonet.pipelines.curate``,
with its runner plumbing beside it in ``videonet.pipelines.runners``).
"""
