"""Vocabulary: the ImageNet-1k classes and their WordNet 3.0 query terms (``classes``, ``wordnet``)."""
