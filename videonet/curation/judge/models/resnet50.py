"""torchvision's ResNet-50, the paper's classifier: a torchvision weights enum (downloaded by torchvision
into $TORCH_HOME like any torchvision user's cache) or a state-dict file/URL readable by every worker."""

from __future__ import annotations

from videonet.errors import UserError
from videonet.torch_utils import IMAGENET_MEAN as MEAN, IMAGENET_STD as STD, load_state_dict  # noqa: F401 - MEAN/STD: read by the registry


def load_model(weights: str | None):
    import torchvision
    from torchvision.models import ResNet50_Weights

    name = weights or "IMAGENET1K_V2"
    enum_name = name.removeprefix("ResNet50_Weights.")
    if enum_name in ResNet50_Weights.__members__:
        try:
            return torchvision.models.resnet50(weights=ResNet50_Weights[enum_name])
        except Exception as exc:  # URLError offline, hash mismatch, truncated cache file...
            raise UserError(f"cannot load ResNet-50 weights {enum_name} (torchvision download into "
                            f"$TORCH_HOME failed: {str(exc).splitlines()[0]}); pass --weights FILE") from None
    if name.startswith("ResNet50_Weights.") or not any(c in name for c in "/.\\"):
        raise UserError(f"unknown torchvision weights {name!r}: use one of "
                        f"{', '.join(ResNet50_Weights.__members__)} or a file path")
    model = torchvision.models.resnet50()
    try:
        model.load_state_dict(load_state_dict(name, what="classifier weights"))
    except RuntimeError as exc:
        raise UserError(f"weights {name} do not fit ResNet-50: {str(exc).splitlines()[0][:200]}") from None
    return model
