"""What each entry point needs installed, checked before its imports fail deep inside (a GPU machine
may hold torch, accelerate and huggingface_hub but not datasets or dvc). Standard library only."""
from __future__ import annotations

import importlib.metadata
import sys

TRAIN = ("torch", "accelerate", "datasets", "huggingface-hub", "safetensors", "numpy", "pyyaml", "tqdm", "pillow",
         "scipy", "google-crc32c", "h5py")
PIPELINE = (*TRAIN, "scikit-learn", "matplotlib", "nbformat", "nbclient", "nbconvert", "ipykernel")
NEEDS = {"train": TRAIN, "pipeline": PIPELINE, "replicate": (*PIPELINE, "dvc")}  # replicate runs the pipelines
HINT = ("install them with `make venv`, or without a network from a wheelhouse (`make wheelhouse` on a "
        "machine with one; README, 'Installing without a network')")


def missing(distributions: tuple[str, ...]) -> list[str]:
    out = []
    for name in distributions:
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out.append(name)
    return out


def require(entry: str) -> None:
    """Exit with status 2 and one line naming every missing distribution that `entry` needs."""
    absent = missing(NEEDS[entry])
    if absent:
        print(f"error: {entry} needs {', '.join(absent)}, which {'is' if len(absent) == 1 else 'are'} not "
              f"installed: {HINT}", file=sys.stderr)
        raise SystemExit(2)
