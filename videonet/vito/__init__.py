"""VITO self-supervised training on curated video shards (``videonet train``).

One module per concern, in the order data flows: :mod:`.config` (the run's settings, which are the
command's options), :mod:`.sampling` (frame times per view), :mod:`.transcode` (the trainer-ready
copy curation can store), :mod:`.data` (WebDataset shards -> decoded, cropped frames),
:mod:`.augment` (BYOL A1/A2: crop boxes and parameters on the CPU, the ops on the training device),
:mod:`.model` (ResNet + multi-scale attention pooling + projector/predictor), :mod:`.loss`
(InfoNCE with MoCLR negatives), :mod:`.ema` (target network), :mod:`.lars` (optimizer and schedule),
:mod:`.train` (loop, checkpoints, export) and :mod:`.cli`. Importing this package imports nothing heavy.
"""
