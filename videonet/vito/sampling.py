"""Frame-time samplers: which instants of a clip become the views of one training example.

VITO's point is that the views of a positive pair come from *different frames* of a short window, so
the network learns invariance to the natural changes of a scene over time (pose, viewpoint,
deformation, occlusion) rather than only to synthetic augmentations. The paper's default picks a
window of T = 2.56 s, then draws each view's time independently and uniformly inside it ("marginal
sampling"); the gap between two views is then triangular on [0, T]: most pairs are close in time
(mode 0), some are far apart (median T * (1 - 1/sqrt 2) ~= 0.75 s for T = 2.56 s).

The ablations of the paper are here too, so that a single flag switches the data without touching
the rest of the trainer:

- ``fixed``: views at a fixed spacing ``delta`` = T / (views - 1) from a random start (Gordon et
  al., "Watching the world go by"), i.e. always the same temporal distance.
- ``chunked``: the window cut into ``views`` equal chunks, one uniform time per chunk (Xu & Wang),
  so views never coincide and are ordered in time.
- ``single``: all views from one uniformly drawn frame, i.e. image-style MoCLR/BYOL on video frames.

Every sampler takes the clip's duration and a :class:`random.Random` (so the data stream is a
deterministic function of the seed, which is what makes resuming bit-exact) and returns one time in
seconds per view, each in ``[0, duration]``.
"""

from __future__ import annotations

import random
from typing import Callable

WINDOW_S = 2.56
"""The temporal window of VITO (64 frames at 25 fps)."""

Sampler = Callable[[float, int, random.Random], list[float]]


def _window(duration: float, window: float, rng: random.Random) -> tuple[float, float]:
    """A window of ``window`` seconds whose start is uniform over the clip (the whole clip if shorter)."""
    length = min(window, max(duration, 0.0))
    start = rng.uniform(0.0, max(duration, 0.0) - length)
    return start, length


def marginal(duration: float, views: int, rng: random.Random, window: float = WINDOW_S) -> list[float]:
    """VITO: one window, then each view's time independently uniform inside it."""
    start, length = _window(duration, window, rng)
    return [start + rng.uniform(0.0, length) for _ in range(views)]


def fixed(duration: float, views: int, rng: random.Random, window: float = WINDOW_S) -> list[float]:
    """Gordon et al.: views ``delta = window / (views - 1)`` apart from a random start."""
    start, length = _window(duration, window, rng)
    delta = length / max(views - 1, 1)
    return [start + i * delta for i in range(views)]


def chunked(duration: float, views: int, rng: random.Random, window: float = WINDOW_S) -> list[float]:
    """Xu & Wang: the window split into ``views`` equal chunks, one uniform time in each."""
    start, length = _window(duration, window, rng)
    chunk = length / views
    return [start + (i + rng.random()) * chunk for i in range(views)]


def single(duration: float, views: int, rng: random.Random, window: float = WINDOW_S) -> list[float]:
    """Image-style baseline (MoCLR on frames): every view is the same uniformly drawn frame."""
    del window  # one frame has no window; the argument keeps the samplers interchangeable
    t = rng.uniform(0.0, max(duration, 0.0))
    return [t] * views


SAMPLERS: dict[str, Sampler] = {"marginal": marginal, "fixed": fixed, "chunked": chunked, "single": single}
