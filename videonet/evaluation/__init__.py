"""Evaluation of frozen or finetuned image backbones: kNN, linear probe, robustness, human alignment, DAVIS, UCF-101.

One module per concern (in the spirit of torchvision's ``references/``): ``backbone`` loads a
checkpoint and exposes intermediate layers, ``features`` extracts frozen features, ``knn`` and
``linear`` classify them, ``davis``/``davis_metrics`` do label propagation and J&F, ``ucf101``
finetunes on clips, ``robustness`` scores the saved linear probe on ImageNet-A / -Vid-Robust / -3DCC,
``human`` (with the ``human_categories`` data) compares its errors with model-vs-human's subjects,
``attention_maps`` draws the learned masks or gradient saliency, ``clickme`` scores them against
ClickMe's human maps, ``segment``/``detect``/``finetune`` fine-tune for dense transfer, ``paper``
lays the results out beside the paper's published numbers (``vito_published.csv``),
``results``/``summary`` store and tabulate every metric, ``settings`` holds every evaluation's
settings and defaults (torch-free), and ``cli`` wires them into ``videonet eval``.
"""
