"""Auditable query-term tables (``imagenet1k.tsv``), installed as ``videonet.synonyms``."""
