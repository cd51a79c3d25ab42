"""What a report notebook reads: the metrics of each seed of one paper/dataset/profile. Light imports
only, so the rendered report carries no library warnings."""
from __future__ import annotations

import json
from pathlib import Path

from common.config import ConfigError


def seed_metrics(report_dir: Path, seeds: list[int] | None = None) -> dict[int, dict]:
    """{seed: metrics.json} for each seed in `seeds` (default: every seed evaluated) under report_dir/seeds."""
    found = {int(p.parent.name[4:]): p for p in (report_dir / "seeds").glob("seed*/metrics.json")}
    missing = sorted(set(seeds or ()) - set(found))
    if missing or not found:
        raise ConfigError(f"{report_dir}: no evaluation for seed(s) {missing or 'any'}: run the evaluate stage first")
    return {k: json.loads(found[k].read_text()) for k in sorted(seeds or found)}


def short_commit(commit: str, n: int = 12) -> str:
    """The first n characters of a commit, keeping git_commit's "-dirty" (a tree that differed from it)."""
    return commit[:n] + ("-dirty" if commit.endswith("-dirty") else "")


def segment_text(s: dict) -> str:
    steps = (f"{s['run']} " if "run" in s else "") + f"steps {s['from']:,}-{s['to']:,}"  # run: another run read
    if s.get("unrecorded"):
        return f"{steps}: not recorded (checkpointed before the training record existed)"
    return (f"{steps}: {s['hardware']}, {s['processes']} process(es), commit `{short_commit(s['commit'])}`, "
            f"{s['seconds'] / 60:.1f} min from {s['date'][:16]}")


def training_summary(runs: dict[int, dict]) -> str:
    """Markdown: per seed, what trained which steps (metrics.json's "training", from the training loop)."""
    lines = []
    for seed, m in runs.items():
        segments = m.get("training")
        data = f" (scenes: {m['data_source']})" if m.get("data_source") else ""
        lines += [f"- seed {seed}{data}: " + ("; ".join(map(segment_text, segments)) if segments
                                              else "no training record (the run predates it)")]
    return "Training, stretch by stretch (each start, resume or rollback to its next stop):\n\n" + "\n".join(lines)
