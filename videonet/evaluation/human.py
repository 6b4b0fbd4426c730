"""Human alignment on model-vs-human's shape-bias datasets: accuracy difference, observed and error consistency.

Layout: a bethgelab/model-vs-human checkout whose datasets have been downloaded (its release v0.1)::

    ROOT/datasets/edge/<category>/<image>.png              (no conditions; likewise cue-conflict)
    ROOT/datasets/low-pass/dnn/session-1/<image>.png       0001_lp_dnn_<condition>_<category>_..._<id>.png
    ROOT/raw-data/<dataset>/<dataset>_subject-XX_session_1.csv   human trials (subj, object_response,
                                                                  category, condition, imagename)

The classifier is the frozen backbone with the ``eval linear`` probe. Its 16-class decision is
model-vs-human's ``ImageNetProbabilitiesTo16ClassesMapping``: softmax over the ImageNet classes,
the *mean* probability of each category's wnids, argmax.

Metrics, cross-checked against ``modelvshuman/plotting/analyses.py`` and ``plot.py`` (functions
``SixteenClassAccuracyDifference``, ``ErrorConsistency.analysis``, ``get_raw_benchmark_df``,
``format_benchmark_df``), for each (human subject, condition) with both sides' trials sorted by
image id (``get_short_imagename``):

* accuracy difference: (acc_model - acc_human)^2 (model-vs-human's default ``norm=np.square``);
* observed consistency c_obs: fraction of trials where both are right or both wrong;
* error consistency (Geirhos et al. 2020): kappa = (c_obs - c_exp) / (1 - c_exp) with
  c_exp = p1 p2 + (1 - p1)(1 - p2) (kappa = 1 when c_obs = 1);

averaged over conditions, then over subjects, then over datasets; conditions that
``EXCLUDE_CONDITIONS`` drops (no distortion, or humans below 20 %) are dropped here too.

``error_consistency_human`` is the same average over all pairs of distinct subjects (model-vs-human's
"humans" row), and ``error_consistency_over_human`` = error_consistency / error_consistency_human.
The VITO paper's Table 3 reports a "ceiled error consistency" citing Geirhos et al. (2020, 2021);
model-vs-human, the code of that method, computes no ceiled value (its analyses stop at kappa and
show the human-human kappa beside it), so this ratio is named for what it is, not after the
paper's column, and may not be the quantity the paper printed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torchvision import transforms

from videonet.errors import UserError
from videonet.evaluation.features import normalize
from videonet.evaluation.human_categories import HUMAN_CATEGORIES
from videonet.evaluation.linear import LinearHead
from videonet.evaluation.robustness import ImageFiles, head_indices, head_logits
from videonet.evaluation.settings import SHAPE_BIAS_DATASETS, Features, Workers

# model-vs-human's plot.EXCLUDE_CONDITIONS for these datasets (edge and cue-conflict have one condition).
EXCLUDE_CONDITIONS = {"low-pass": ("0", "15", "40"), "uniform-noise": ("0.0", "0.6", "0.9")}
WITH_SESSIONS = ("low-pass", "uniform-noise")  # images under dnn/session-N/, condition and category in the name


def short_imagename(name: str) -> str:
    """The trial-independent part of an image name (model-vs-human's ``get_short_imagename``).

    ``0001_lp_s01_40_chair_10_n04099969_7577.png`` -> ``n04099969_7577.png`` (ImageNet images keep
    their wnid), ``0001_edg_s01_0_oven_00_oven10.png`` -> ``oven10.png``, ``oven10.png`` -> itself.
    """
    parts = name.split("_")
    if len(parts) == 1:
        return name
    return "_".join(parts[-2:]) if parts[-2].startswith("n0") else parts[-1]


def error_consistency(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float]:
    """Accuracy difference, expected/observed consistency and kappa of two aligned 0/1 correctness vectors."""
    p1, p2 = float(np.mean(correct_a)), float(np.mean(correct_b))
    expected = p1 * p2 + (1 - p1) * (1 - p2)
    observed = float(np.mean(correct_a == correct_b))
    kappa = 1.0 if observed == 1.0 else (observed - expected) / (1.0 - expected)
    return {"accuracy_difference": (p1 - p2) ** 2, "observed_consistency": observed, "error_consistency": kappa}


def read_human_trials(root: Path, dataset: str) -> pd.DataFrame:
    """Every subject's trials of one dataset (raw-data/<dataset>/*.csv) with an ``image_id`` column."""
    files = sorted((root / "raw-data" / dataset).glob(f"{dataset}_subject-*_session_*.csv"))
    if not files:
        raise UserError(f"{root / 'raw-data' / dataset} has no {dataset}_subject-XX_session_N.csv (model-vs-human's raw-data/)")
    df = pd.concat([pd.read_csv(f).rename(columns=str.lower) for f in files], ignore_index=True)
    return df.assign(condition=_condition_names(df["condition"]), image_id=df["imagename"].map(short_imagename))


def _condition_names(conditions: pd.Series) -> pd.Series:
    """Condition labels as model-vs-human compares them: parsed as numbers by pandas, then ``str`` ('0.90' -> '0.9')."""
    return pd.to_numeric(conditions).astype(str)


def list_images(root: Path, dataset: str) -> pd.DataFrame:
    """The dataset's images with their category, condition and image id, per model-vs-human's info mappings."""
    folder = root / "datasets" / dataset
    rows = []
    if dataset in WITH_SESSIONS:
        for path in sorted((folder / "dnn").glob("session-*/*.png")):
            parts = path.name.split("_")  # InfoMappingWithSessions: condition = parts[3], category = parts[4]
            rows.append((path, parts[4], parts[3]))
    else:
        rows = [(p, p.parent.name, "0") for p in sorted(folder.glob("*/*.png"))]  # ImageNetInfoMapping
    if not rows:
        raise UserError(f"{folder} has no images (download model-vs-human's {dataset} dataset into datasets/)")
    df = pd.DataFrame(rows, columns=["path", "category", "condition"])
    return df.assign(condition=_condition_names(df["condition"]), image_id=df["path"].map(lambda p: short_imagename(p.name)))


def sixteen_class_decisions(probabilities: torch.Tensor, head: LinearHead) -> list[str]:
    """Category with the highest mean probability over its wnids among the head's classes."""
    categories = sorted(HUMAN_CATEGORIES)
    index = {c: i for i, c in enumerate(head.classes)}
    columns = []
    for category in categories:
        present = [w for w in HUMAN_CATEGORIES[category] if w in index]
        if not present:
            raise UserError(f"the linear head has none of the wnids of '{category}': train it on ImageNet wnid folders")
        columns.append(probabilities[:, head_indices(head, present, category)].mean(dim=1))
    return [categories[i] for i in torch.stack(columns, dim=1).argmax(dim=1).tolist()]


def _pair_scores(a: pd.DataFrame, b: pd.DataFrame, what: str) -> dict[str, float]:
    a, b = a.sort_values("image_id"), b.sort_values("image_id")
    if a["image_id"].tolist() != b["image_id"].tolist():
        raise UserError(f"{what}: the model's images and the human trials differ (is the dataset complete?)")
    return error_consistency((a.object_response == a.category).to_numpy(), (b.object_response == b.category).to_numpy())


def compare(model: pd.DataFrame, humans: pd.DataFrame, dataset: str) -> tuple[dict[str, float], dict[str, float]]:
    """(model vs humans, human vs human) metrics of one dataset, averaged over conditions then subjects."""
    excluded = EXCLUDE_CONDITIONS.get(dataset, ())
    conditions = sorted(set(humans["condition"]) - set(excluded))
    subjects = sorted(set(humans["subj"]))
    if dataset not in WITH_SESSIONS:  # one condition: model-vs-human compares all trials
        model, humans, conditions = model.assign(condition="0"), humans.assign(condition="0"), ["0"]

    def mean_over(pairs: list[tuple[pd.DataFrame, pd.DataFrame, str]]) -> dict[str, float]:
        per_pair = pd.DataFrame([_pair_scores(*p) for p in pairs])
        return per_pair.mean().to_dict()

    def subject_mean(left: pd.DataFrame, subject: str) -> dict[str, float]:
        return mean_over([(left[left.condition == c], humans[(humans.subj == subject) & (humans.condition == c)],
                           f"{dataset} {subject} condition {c}") for c in conditions])

    vs_model = pd.DataFrame([subject_mean(model, s) for s in subjects]).mean().to_dict()
    pairs = [(s, t) for i, s in enumerate(subjects) for t in subjects[i + 1 :]]
    vs_human = pd.DataFrame([subject_mean(humans[humans.subj == s], t) for s, t in pairs]).mean().to_dict() if pairs else {}
    vs_model["accuracy"] = float(np.mean([(g.object_response == g.category).mean()
                                          for c in conditions for g in [model[model.condition == c]]]))
    return vs_model, vs_human


def model_vs_human(root: Path, model: torch.nn.Module, head: LinearHead, device: torch.device,
                   datasets: tuple[str, ...] = SHAPE_BIAS_DATASETS, crop_size: int = Features.crop_size,
                   batch_size: int = Features.batch_size, workers: int = Workers.workers) -> dict[str, float]:
    """Classify each dataset's images into the 16 categories and compare with every human subject.

    Images are 224x224 already and model-vs-human feeds them as they are: they are only resized
    (short side) and centre-cropped to ``crop_size``, a no-op at 224 (not the probe's 256 -> 224
    view, which would cut their borders). Returns ``<metric>`` means over datasets plus ``<dataset>/<metric>``;
    the overall ``error_consistency_over_human`` is the mean error consistency over the mean human one.
    """
    view = transforms.Compose([transforms.Resize(crop_size), transforms.CenterCrop(crop_size), transforms.ToTensor(),
                               normalize()])
    per_dataset: dict[str, dict[str, float]] = {}
    for dataset in datasets:
        humans = read_human_trials(root, dataset)
        images = list_images(root, dataset)
        logits, _ = head_logits(model, head, ImageFiles(list(images["path"]), [0] * len(images), transform=view),
                            device, batch_size, workers, dataset)
        trials = images.assign(object_response=sixteen_class_decisions(torch.softmax(logits, dim=1), head))
        vs_model, vs_human = compare(trials, humans, dataset)
        human_ec = vs_human.get("error_consistency", float("nan"))
        per_dataset[dataset] = {**vs_model, "error_consistency_human": human_ec,
                                "error_consistency_over_human": vs_model["error_consistency"] / human_ec}
    names = next(iter(per_dataset.values())).keys()
    metrics = {name: float(np.mean([d[name] for d in per_dataset.values()])) for name in names}
    # Overall: the mean error consistency over the mean human one (not a mean of per-dataset ratios).
    metrics["error_consistency_over_human"] = metrics["error_consistency"] / metrics["error_consistency_human"]
    metrics.update({f"{ds}/{name}": float(v) for ds, d in per_dataset.items() for name, v in d.items()})
    return metrics
