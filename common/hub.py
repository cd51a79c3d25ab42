"""save_pretrained / from_pretrained / push_to_hub for every model (huggingface_hub mixin).

A model subclasses `HubModel`, takes one dataclass `config` in `__init__` and sets `config_class`.
Config goes to `config.json`, weights to `model.safetensors`, and a model card with the paper
citation and `metrics.json` to `README.md`. Loading is strict: unknown config keys, missing or
unexpected weights and unreadable files are errors that name the problem.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import safetensors.torch
from huggingface_hub import ModelCard, ModelCardData, PyTorchModelHubMixin
from torch import nn

from common.config import ConfigError, flatten, from_dict

WEIGHTS = "model.safetensors"


class CheckpointError(RuntimeError):
    """A saved model or training checkpoint that cannot be loaded as it is."""


class HubModel(nn.Module, PyTorchModelHubMixin, library_name="ocrepro", license="mit",
               tags=["object-centric", "unsupervised-segmentation"]):
    """Base for models: subclasses set `config_class` and `citation` and take `config` in `__init__`."""

    config_class: ClassVar[type]
    citation: ClassVar[str] = ""

    @classmethod
    def _decode_arg(cls, expected_type: Any, value: Any) -> Any:
        """config.json -> `config_class`, strictly (the annotation may be a string under PEP 563)."""
        name = getattr(cls.config_class, "__name__", None)
        if isinstance(value, dict) and expected_type in (cls.config_class, name):
            try:
                return from_dict(cls.config_class, value)
            except ConfigError as err:
                raise CheckpointError(f"config.json does not match {name}: {err}") from err
        return super()._decode_arg(expected_type, value)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """A local folder, or a Hub id. A path that cannot be a Hub id, or whose parent is a local folder
        (`runs/typo`), fails at once instead of asking the Hub; a malformed config.json is named."""
        path = Path(pretrained_model_name_or_path)
        if path.is_dir():
            config = path / "config.json"
            if config.is_file():
                try:
                    json.loads(config.read_text())
                except json.JSONDecodeError as err:
                    raise CheckpointError(f"{config}: not valid JSON ({err})") from err
        elif path.is_absolute() or str(pretrained_model_name_or_path).startswith((".", "~")) \
                or len(path.parts) != 2 or path.parent.is_dir():
            raise CheckpointError(f"{pretrained_model_name_or_path}: no such local folder (a Hub id looks like "
                                  f"user/name and must not shadow a local folder)")
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, map_location: str = "cpu", strict: bool = True, **kwargs):
        if not Path(model_id).is_dir():
            return super()._from_pretrained(model_id=model_id, map_location=map_location, strict=True, **kwargs)
        weights = Path(model_id) / WEIGHTS
        if not weights.is_file():
            raise CheckpointError(f"{weights}: no weights file")
        kwargs = {k: v for k, v in kwargs.items()
                  if k not in ("revision", "cache_dir", "force_download", "local_files_only", "token")}
        if "config" not in kwargs:
            raise CheckpointError(f"{Path(model_id) / 'config.json'}: missing; cannot rebuild {cls.__name__}")
        model = cls(**kwargs)
        load_weights(model, weights, map_location)
        return model.eval()

    def save_pretrained(self, save_directory, *, metrics: dict | None = None, **kwargs):
        """Write config, weights, metrics.json and the model card atomically (temp dir, then rename)."""
        target = Path(save_directory)
        if metrics is not None:
            self.card_metrics = metrics
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            if getattr(self, "card_metrics", None) is not None:
                (tmp / "metrics.json").write_text(json.dumps(self.card_metrics, indent=2, sort_keys=True))
            super().save_pretrained(tmp, **kwargs)
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        info = self._hub_mixin_info
        data = ModelCardData(**info.model_card_data.to_dict())
        metrics = getattr(self, "card_metrics", None)
        lines = [f"---\n{data.to_yaml()}\n---", f"# {type(self).__name__}", "",
                 f"Trained with the ocrepro monorepo. Config: `config.json`; weights: `{WEIGHTS}`.", ""]
        if metrics:
            lines += ["## Metrics", "", "| metric | value |", "| --- | --- |"]
            lines += [f"| {k} | {v} |" for k, v in sorted(flatten(metrics).items())] + [""]
        if self.citation:
            lines += ["## Citation", "", "```bibtex", self.citation.strip(), "```", ""]
        return ModelCard("\n".join(lines))


def load_weights(model: nn.Module, path: Path, map_location: str = "cpu") -> None:
    """Strict safetensors load with errors naming the file and the offending keys."""
    try:
        state = safetensors.torch.load_file(str(path), device=map_location)
    except Exception as err:
        raise CheckpointError(f"{path}: unreadable safetensors file ({err})") from err
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not match {type(model).__name__}: "
                              f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    wrong = [k for k in state if state[k].shape != own[k].shape]
    if wrong:
        raise CheckpointError(f"{path}: shape mismatch for {wrong[:5]}, e.g. {wrong[0]} "
                              f"{tuple(state[wrong[0]].shape)} vs {tuple(own[wrong[0]].shape)}")
    model.load_state_dict(state, strict=True)


def model_folder(run_dir: Path) -> Path:
    folder = Path(run_dir) / "model" if (Path(run_dir) / "model" / WEIGHTS).is_file() else Path(run_dir)
    if not (folder / WEIGHTS).is_file():
        raise CheckpointError(f"{folder}: no {WEIGHTS} to publish")
    return folder


def with_evaluation(run_dir: Path, metrics_file: Path, out: Path) -> Path:
    """The run's saved model re-saved into `out` with an evaluation's record (a pipeline's metrics.json) as
    its metrics.json and in its model card, so the published card carries the numbers measured for it."""
    from common.evaluate import load_run
    try:
        metrics = json.loads(Path(metrics_file).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{metrics_file}: not an evaluation record ({err})") from err
    _, model = load_run(Path(run_dir))
    model.save_pretrained(out, metrics=metrics)
    return out


def push(run_dir: Path, repo_id: str, private: bool = True, metrics_file: Path | None = None) -> str:
    """Upload a saved model folder (weights, config, card, metrics) to the Hub, with the card carrying
    `metrics_file` when given (e.g. reports/<paper>/<config>-<profile>/seeds/seed0/metrics.json). Never run
    by tests."""
    from huggingface_hub import HfApi

    folder = model_folder(run_dir)
    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    if metrics_file is None:
        return str(api.upload_folder(folder_path=str(folder), repo_id=repo_id))
    with tempfile.TemporaryDirectory() as tmp:
        card = with_evaluation(Path(run_dir), metrics_file, Path(tmp) / "model")
        return str(api.upload_folder(folder_path=str(card), repo_id=repo_id))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m common.hub", description="Publish a trained model.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("push", help="upload RUN/model to the Hub")
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--repo-id", required=True)
    p.add_argument("--public", action="store_true")
    p.add_argument("--metrics", type=Path, default=None, help="an evaluation's metrics.json for the model card")
    args = parser.parse_args(argv)
    print(push(args.run, args.repo_id, private=not args.public, metrics_file=args.metrics))


if __name__ == "__main__":
    main()
