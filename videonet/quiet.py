"""A quiet start: no warnings about Beam's optional extras unless the command needs them.

``import apache_beam`` imports its BigQuery client stubs
(``apache_beam/io/gcp/internal/clients/bigquery/__init__.py``), which log "apitools not found, and
bigquery client libraries are not available ..." on the root logger when the ``[gcp]`` extra is
absent. videonet needs that extra only for ``gs://`` paths and Dataflow; for anything else the
line is noise the user cannot act on. The CLI installs this filter before anything imports Beam,
and only when the command line names nothing that needs the extra, so a ``gs://`` or Dataflow user
still hears that it is missing.
"""

from __future__ import annotations

import logging
from typing import Sequence

OPTIONAL_EXTRA_WARNINGS = ("apitools not found",)  # the start of each message, as Beam logs it
NEEDS_GCP = ("gs://", "dataflow")  # in any argument (lower-cased): a path or runner that needs [gcp]


class OptionalExtrasFilter(logging.Filter):
    """Drops the records that only say an optional Beam extra is not installed."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(OPTIONAL_EXTRA_WARNINGS)


def needs_gcp(argv: Sequence[str]) -> bool:
    """Whether the command line asks for something that needs Beam's [gcp] extra."""
    return any(marker in arg.lower() for arg in argv for marker in NEEDS_GCP)


def quiet_optional_extras(argv: Sequence[str]) -> bool:
    """Install the filter on the root logger (where Beam logs it) unless ``argv`` needs GCP; return
    whether it was installed. Call it before the first ``import apache_beam``."""
    if needs_gcp(argv):
        return False
    root = logging.getLogger()
    if not any(isinstance(f, OptionalExtrasFilter) for f in root.filters):
        root.addFilter(OptionalExtrasFilter())
    return True
