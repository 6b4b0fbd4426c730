"""The run's live counters as Beam Metrics (namespace ``videonet``): what a Flink or Dataflow user sees
in the job's UI while it runs, the same numbers the run directory's tables hold at the end.

- ``kept``: clips committed to shards;
- one counter per audit status of a dropped candidate (``too_short``, ``rejected_by_classifier``,
  ``download_retriable``...): the audit's own vocabulary;
- ``<stage>_requests``, ``<stage>_retries``, ``<stage>_429s`` for the ``search`` and ``download`` stages
  (429s: answered 429 or a bot check), counted from each request tally as it leaves its stage.
"""

from __future__ import annotations

from apache_beam.metrics.metric import Metrics, MetricsFilter
from apache_beam.runners.runner import PipelineResult

NAMESPACE = "videonet"
KEPT = "kept"
_TALLIED = {"requests": "requests", "retries": "retries", "rate_limited": "429s"}  # tally field -> counter suffix


def count_kept(clips: int) -> None:
    Metrics.counter(NAMESPACE, KEPT).inc(clips)


def count_drop(row: dict) -> dict:
    """Count an audit row under its status; returns the row (a step of the audit branch)."""
    Metrics.counter(NAMESPACE, row["status"]).inc()
    return row


def count_requests(tally: dict) -> dict:
    """Count a request tally row (``client.Tally.row``) under its stage; returns the row."""
    for field, suffix in _TALLIED.items():
        if tally[field]:
            Metrics.counter(NAMESPACE, f"{tally['stage']}_{suffix}").inc(tally[field])
    return tally


def read_counters(result: PipelineResult) -> dict[str, int]:
    """The ``videonet`` counters of a pipeline result: committed values where the runner reports them,
    else attempted ones (the local runner reports both)."""
    found = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    totals: dict[str, int] = {}
    for counter in found:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + value
    return totals
