"""VITO self-supervised training on curated video shards (``videonet train``).

One module per concern, in the order data flows: :mod:`.sampling` (frame times per view),
:mod:`.data` (WebDataset shards -> seek-decoded frames), :mod:`.augment` (BYOL A1/A2),
:mod:`.model` (ResNet + multi-scale attention pooling + projector/predictor), :mod:`.loss`
(InfoNCE), :mod:`.ema` (target network), :mod:`.lars` (optimizer and schedule), :mod:`.train`
(loop, checkpoints, export) and :mod:`.cli`. Importing this package imports nothing heavy.
"""
