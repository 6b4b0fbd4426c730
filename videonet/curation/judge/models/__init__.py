"""The ImageNet classifiers the judge can use, as a registry (split like Beam's ``ModelHandler``).

Each entry is a module that knows how to *load* its model: ``load_model(weights) -> nn.Module``
plus the input normalisation its weights expect (``MEAN``, ``STD``). How to *run* it is shared by
all of them: :class:`videonet.curation.judge.classifier.Classifier` (fast path, batching, precision).
A new classifier is one module here plus one entry in :data:`MODELS`.
"""

MODELS = {
    "resnet50": "videonet.curation.judge.models.resnet50",
    "efficientnet-lite0": "videonet.curation.judge.models.efficientnet_lite0",
}
