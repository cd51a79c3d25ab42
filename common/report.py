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
