"""The stages every paper's DVC pipeline runs: prepare data -> train -> evaluate -> report.

A paper supplies `papers/<paper>/configs/<dataset>.yaml` (an experiment with profiles), an evaluate
function and a report notebook; `python -m papers.<paper>.pipeline STAGE --dataset D --profile P`
runs one stage. Outputs: data/<paper>/<dataset>-<profile>, runs/<paper>/<dataset>-<profile> and
reports/<paper>/<dataset>-<profile>.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from common.config import ConfigError, parse_overrides, to_dict
from common.data import DatasetError, generate_dataset, load_meta
from common.hub import CheckpointError
from common.report import seed_metrics
from common.train.experiment import ExperimentConfig, check_resumable, load_experiment
from common.train.loop import EXIT_BUDGET, BudgetSpent

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("prepare", "train", "evaluate", "report")
OUTPUT_ROOT_ENV = "OCREPRO_OUTPUT_ROOT"  # where data/, runs/ and reports/ go (default: the repository)
BUDGET_ENV = "OCREPRO_MAX_MINUTES"  # time budget of each training stage (make replicate MAX_MINUTES=...)
KEEP_FINISHED_ENV = "OCREPRO_KEEP_FINISHED"  # set by common.lease: a finished run is kept, not trained again


def output_root() -> Path:
    return Path(os.environ.get(OUTPUT_ROOT_ENV, ROOT))


@dataclass
class Stage:
    """One paper/dataset/profile/seed. Data are shared by the seeds; each seed trains its own run
    (runs/<paper>/<dataset>-<profile>/seed<k>, with train.seed = k) and writes its own metrics
    (reports/<paper>/<dataset>-<profile>/seeds/seed<k>); the report beside them aggregates the seeds."""

    paper: str
    dataset: str
    profile: str
    overrides: tuple[str, ...] = ()  # KEY=VALUE config overrides, as `python -m common.train --set`
    seed: int = 0
    config_file: Path | None = None  # another paper's or a shared config (a baseline); default configs/<dataset>.yaml

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.profile}"

    @property
    def config_path(self) -> Path:
        return self.config_file or ROOT / "papers" / self.paper / "configs" / f"{self.dataset}.yaml"

    @property
    def data_dir(self) -> Path:
        return output_root() / "data" / self.paper / self.name

    @property
    def run_dir(self) -> Path:
        return output_root() / "runs" / self.paper / self.name / f"seed{self.seed}"

    @property
    def report_dir(self) -> Path:
        """The aggregate report of every seed (report.md)."""
        return output_root() / "reports" / self.paper / self.name

    @property
    def seed_dir(self) -> Path:
        """This seed's evaluation: metrics.json and figures."""
        return self.report_dir / "seeds" / f"seed{self.seed}"

    @property
    def settings(self) -> tuple[str, ...]:
        """The overrides with this stage's training seed."""
        return (*self.overrides, f"train.seed={self.seed}")

    def experiment(self) -> ExperimentConfig:
        if not self.config_path.is_file():
            available = sorted(p.stem for p in self.config_path.parent.glob("*.yaml"))
            raise ConfigError(f"no config for dataset '{self.dataset}' in papers/{self.paper}/configs "
                              f"(available: {', '.join(available)})")
        return load_experiment(self.config_path, self.profile, parse_overrides(list(self.settings)))


def prepare(stage: Stage) -> Path:
    """Generate the dataset of this profile, or check that the configured (converted) folder exists."""
    exp = stage.experiment()
    if exp.data.path is not None:  # a converted release: check it, and record which one this stage used
        try:
            meta = load_meta(ROOT / exp.data.path)
        except DatasetError as err:
            raise DatasetError(f"{err}. This config reads a converted published release: run the "
                               f"`python -m common.data convert ...` command in the header of "
                               f"{stage.config_path.relative_to(ROOT)} first") from err
        stage.data_dir.mkdir(parents=True, exist_ok=True)
        (stage.data_dir / "source.json").write_text(json.dumps({"path": exp.data.path, "splits": meta.splits}))
        return ROOT / exp.data.path
    sizes = {exp.data.train_split: exp.data.n_train, exp.data.eval_split: exp.data.n_eval}
    return generate_dataset(exp.data.name, stage.data_dir, sizes, exp.data.seed, exp.data.params, overwrite=True)


def data_path(stage: Stage) -> Path:
    exp = stage.experiment()
    return ROOT / exp.data.path if exp.data.path is not None else stage.data_dir


def unfinished(run_dir: Path) -> bool:
    """A run that saved a checkpoint but no final model: interrupted (e.g. by its time budget)."""
    return (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").glob("step_*")) \
        and not (run_dir / "model").is_dir()


def same_config(run_dir: Path, stage: Stage, settings: list[str]) -> bool:
    """Whether the run in run_dir may resume under the stage's config (else it is stale: start afresh)."""
    current = to_dict(load_experiment(stage.config_path, stage.profile, parse_overrides(settings)))
    try:
        check_resumable(yaml.safe_load((run_dir / "config.yaml").read_text()), current)
    except ConfigError as err:
        print(f"{run_dir}: not resumed, {err}", file=sys.stderr)
        return False
    return True


def finished(stage: Stage, run_dir: Path | None = None, data: Stage | None = None) -> bool:
    """Whether `run_dir` (default: the stage's) holds a final model trained under the stage's config, steps
    included (only where the data are may differ)."""
    run_dir = run_dir or stage.run_dir
    if not (run_dir / "model").is_dir() or not (run_dir / "config.yaml").is_file():
        return False
    settings = [f"data.path={data_path(data or stage)}", *stage.settings]
    steps = load_experiment(stage.config_path, stage.profile, parse_overrides(settings)).train.steps
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    return isinstance(saved, dict) and (saved.get("train") or {}).get("steps") == steps \
        and same_config(run_dir, stage, settings)


def train(stage: Stage, resume: bool = False, data: Stage | None = None, run_dir: Path | None = None,
          max_minutes: float | None = None, **rows) -> Path:
    """Run the shared training CLI on the prepared data of `data` (default: this stage's own) into
    `run_dir` (default: the stage's). An unfinished run there is resumed (its config must match); anything
    else there is replaced by a fresh run, except a `finished` one where $OCREPRO_KEEP_FINISHED is set (a lease
    run again must not retrain what an earlier one finished: IODINE's sweep, the baselines). `max_minutes`
    (default: $OCREPRO_MAX_MINUTES) is a time budget after which training saves and stops (BudgetSpent); the
    same call again resumes. `rows=..., prepare=...`
    train on rows other than the data's images (`common.train.__main__.run`; SVQ's priors on codes)."""
    from common.train.__main__ import parse_args, run
    run_dir = run_dir or stage.run_dir
    settings = [f"data.path={data_path(data or stage)}", *stage.settings]
    if os.environ.get(KEEP_FINISHED_ENV) and finished(stage, run_dir, data):
        print(f"kept the finished run in {run_dir} (${KEEP_FINISHED_ENV})", file=sys.stderr)
        return run_dir
    resume = resume or (unfinished(run_dir) and same_config(run_dir, stage, settings))
    if run_dir.exists() and not resume:
        shutil.rmtree(run_dir)
    max_minutes = max_minutes if max_minutes is not None else os.environ.get(BUDGET_ENV)
    args = [str(stage.config_path), "--out", str(run_dir), "--profile", stage.profile]
    args += [a for o in settings for a in ("--set", o)] + (["--resume"] if resume else [])
    args += ["--max-minutes", str(max_minutes)] if max_minutes is not None else []
    if resume:
        print(f"resuming the unfinished run in {run_dir}", file=sys.stderr)
    return run(parse_args(args), **rows)


def report_seeds(paper: str, given: str | None) -> list[int] | None:
    """The seeds a report aggregates: `given` ("0,1,2"), else params.yaml's <paper>.seeds, else None (all)."""
    if given:
        try:
            return [int(k) for k in given.split(",")]
        except ValueError as err:
            raise ConfigError(f"--seeds takes comma-separated integers, got {given!r}") from err
    params = ROOT / "params.yaml"
    return (yaml.safe_load(params.read_text()) or {}).get(paper, {}).get("seeds") if params.is_file() else None


def add_jupyter_data(site: Path) -> None:
    """Put `site`/share/jupyter on $JUPYTER_PATH when it exists: `pip install --target SITE` (the wheels a GPU lease
    carries) leaves nbconvert's templates there, where Jupyter does not look. A venv's site-packages has none."""
    share, paths = site / "share" / "jupyter", [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]
    if share.is_dir() and str(share) not in paths:
        os.environ["JUPYTER_PATH"] = os.pathsep.join([*paths, str(share)])


def render_report(stage: Stage, notebook: Path, seeds: list[int] | None = None) -> Path:
    """Execute the paper's notebook for this dataset/profile over `seeds` (default: every evaluated seed)
    and write report.md beside the seeds' folders. The notebook reads $REPORT_DIR and $REPORT_SEEDS."""
    import nbconvert
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import MarkdownExporter

    add_jupyter_data(Path(nbconvert.__file__).resolve().parents[1])
    seeds = list(seed_metrics(stage.report_dir, seeds))  # fails clearly when a seed was not evaluated
    nb = nbformat.read(notebook, as_version=4)
    os.environ.update(REPORT_DIR=str(stage.report_dir), REPORT_DATASET=stage.dataset, REPORT_PROFILE=stage.profile,
                      REPORT_SEEDS=",".join(map(str, seeds)))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    body, resources = MarkdownExporter(exclude_input=True).from_notebook_node(nb)
    stage.report_dir.mkdir(parents=True, exist_ok=True)
    for name, data in resources.get("outputs", {}).items():
        (stage.report_dir / name).write_bytes(data)
    out = stage.report_dir / "report.md"
    out.write_text(body)
    return out


def main(paper: str, evaluate: Callable[[Stage], Path], argv: list[str] | None = None,
         extra: dict[str, Callable[[Stage], Path]] | None = None,
         train_stage: Callable[..., Path] = train) -> int:
    """CLI of a paper's pipeline; `extra` adds paper-specific stages (e.g. a baseline), `train_stage`
    replaces the train stage (e.g. to refuse configs that only evaluate)."""
    extra = extra or {}
    p = argparse.ArgumentParser(prog=f"python -m papers.{paper}.pipeline")
    p.add_argument("stage", choices=STAGES + tuple(k for k in extra if k not in STAGES))
    p.add_argument("--dataset", required=True)
    p.add_argument("--profile", default="smoke", choices=("smoke", "short", "paper"))
    p.add_argument("--resume", action="store_true", help="train: continue the existing run")
    p.add_argument("--max-minutes", type=float, default=None,
                   help=f"training time budget (default ${BUDGET_ENV}): save, exit {EXIT_BUDGET}; rerun to resume")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every stage (e.g. train.steps=10)")
    p.add_argument("--seed", type=int, default=0, help="train/evaluate: the training seed (its own run folder)")
    p.add_argument("--seeds", default=None,
                   help=f"report: seeds to aggregate, e.g. 0,1,2 (default: params.yaml's {paper}.seeds, else all)")
    args = p.parse_args(argv)
    stage = Stage(paper, args.dataset, args.profile, tuple(args.overrides), args.seed)
    try:
        if args.stage in extra:  # a paper's own stage, or its replacement of a built-in one (IODINE's prepare)
            print(f"{args.stage}: {extra[args.stage](stage)}")
        elif args.stage == "prepare":
            print(f"data: {prepare(stage)}")
        elif args.stage == "train":
            print(f"run: {train_stage(stage, args.resume, max_minutes=args.max_minutes)}")
        elif args.stage == "evaluate":
            print(f"metrics: {evaluate(stage)}")
        else:
            seeds = report_seeds(paper, args.seeds)
            print(f"report: {render_report(stage, ROOT / 'papers' / paper / 'report.ipynb', seeds)}")
    except (ConfigError, DatasetError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BudgetSpent as err:
        print(f"{err}. Run the same command again to resume.", file=sys.stderr)
        return EXIT_BUDGET
    return 0
