"""Evaluation of frozen or finetuned image backbones: kNN, linear probe, DAVIS, UCF-101, attention maps.

One module per concern (in the spirit of torchvision's ``references/``): ``backbone`` loads a
checkpoint and exposes intermediate layers, ``features`` extracts frozen features, ``knn`` and
``linear`` classify them, ``davis``/``davis_metrics`` do label propagation and J&F, ``ucf101``
finetunes on clips, ``attention_maps`` draws the learned masks, ``results``/``summary`` store and
tabulate every metric, and ``cli`` wires them into ``videonet eval``.
"""
