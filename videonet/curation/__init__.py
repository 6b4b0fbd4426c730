"""Curation: the VideoNet procedure as stages, one home each, in the order data flows.

vocabulary/ (classes + WordNet terms) -> search/ (sources: youtube, catalog, demo) ->
candidates (title match, dedup + cap, duration) -> judge/ (fetch, frames, scan, classifier,
verdicts) -> write/ (records, run directory, shards, thumbnails) -> report/ (tables, report.html,
``videonet show``). ``client`` is how search and fetch reach a video site (options, failure classes,
pacing, retries). ``run`` is the driver: the settings of every stage and the run's state. The Beam
graph that wires them is ``videonet.pipelines.curate``.
"""
