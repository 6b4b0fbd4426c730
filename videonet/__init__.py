"""videonet: curate VideoNet-style video datasets and train VITO representations on them."""

__version__ = "0.1.0"
