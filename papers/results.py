"""python -m papers.results [--check]: the results of record in reports/README.md.

One table across papers, datasets and profiles, generated from the committed `metrics.json` files of
`short` and `paper` runs (reports/<paper>/<dataset>-<profile>/seeds/seed<k>/metrics.json, one per
seed); smoke runs never appear. Each paper's `paper_results.CLAIMS` names the numbers the
paper reports and where ours sit in metrics.json. "hardware" is what trained the runs and "commit" every
commit that trained or evaluated them (metrics.json's "training" segments, written by the training loop;
a run without that record shows its evaluation's); "data" says whether ours trained on procedurally
generated stand-ins or on a converted published release (the papers' numbers are on the latter). Without
--check the table is rewritten; with it the command exits 1 if the committed table differs from what the
metrics files give.
"""
from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.report import short_commit

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ("iodine", "emorl", "sri", "lom", "svq")
PROFILES = ("short", "paper")
BEGIN, END = "<!-- results:begin (python -m papers.results) -->", "<!-- results:end -->"


@dataclass(frozen=True)
class Claim:
    """A number a paper reports (mean, std over `seeds`, where) and the key of ours in metrics.json."""

    dataset: str
    metric: str
    paper: float
    std: float | None
    seeds: int | None
    source: str
    key: str  # dotted path into metrics.json, e.g. "metrics.ari_fg"
    scale: float = 1.0  # ours x scale is in the paper's unit (e.g. 100 for %)

    def label(self, profile: str) -> str:
        """The metric as a report of `profile` names it. An "ours: ..." clause with a number in it gives the `short`
        and `paper` profiles' counts (samples, scenes); a smoke report's are far smaller, so there the clause points
        to the counts that the report itself states for the run. (Word any other number in a label without "ours:".)"""
        if profile != "smoke":
            return self.metric
        return re.sub(r"ours: [^;)]*\d[^;)]*", "ours: this run's counts, stated in this report", self.metric)


def claims(paper: str) -> list[Claim]:
    try:
        return list(importlib.import_module(f"papers.{paper}.paper_results").CLAIMS)
    except (ImportError, AttributeError):
        return []


def runs(root: Path, paper: str, dataset: str, profile: str) -> list[dict]:
    """The metrics of every seed of one dataset/profile, smoke excluded."""
    files = sorted((root / "reports" / paper / f"{dataset}-{profile}" / "seeds").glob("seed*/metrics.json"))
    found = [json.loads(f.read_text()) for f in files]
    return [m for m in found if m.get("profile") != "smoke"]


ABSENT = object()  # a key a metrics file does not hold (a held key may be null: a target never reached)


def lookup(metrics: dict, key: str, default=None):
    for part in key.split("."):
        if not isinstance(metrics, dict) or part not in metrics:
            return default
        metrics = metrics[part]
    return metrics


def trained_on(m: dict, key: str) -> set[str]:
    """`key` ("hardware" or "commit") of every segment that trained the run (metrics.json's "training"),
    "unrecorded" for steps saved before segments were recorded; the evaluation's own where there is no record."""
    segments = m.get("training")
    if not segments:
        return {str(m.get(key, "?"))}
    return {"unrecorded" if s.get("unrecorded") else str(s.get(key, "?")) for s in segments}


def data_kind(m: dict) -> str:
    """"published" for a converted release (common.data.convert), "generated" for a procedural stand-in."""
    source = m.get("data_source")
    return "?" if source is None else "published" if source.startswith("common.data.convert") else "generated"


def fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def row(claim: Claim, paper: str, profile: str, found: list[dict]) -> list[str]:
    spread = f" ± {fmt(claim.std)}" if claim.std is not None else ""
    seeds = f" ({claim.seeds} seeds)" if claim.seeds else ""
    head = [paper, claim.dataset, claim.metric, claim.source, f"{fmt(claim.paper)}{spread}{seeds}", profile]
    used = [m for m in found if lookup(m, claim.key, ABSENT) is not ABSENT]
    if not used:
        return head + ["not yet run", "—", "—", "—", "—", "—", "—"]
    values = [v * claim.scale for v in (lookup(m, claim.key) for m in used) if v is not None]
    ours = fmt(float(np.mean(values))) + (f" ± {fmt(float(np.std(values)))}" if len(values) > 1 else "") \
        if values else "null in every run"
    if values and len(values) < len(used):
        ours += f" (null in {len(used) - len(values)} of {len(used)} runs)"
    join = lambda key: ", ".join(sorted({str(m.get(key, "?")) for m in used}))
    hardware = set().union(*(trained_on(m, "hardware") for m in used))  # what trained it
    commits = set().union(*({str(m.get("commit", "?"))} | trained_on(m, "commit") for m in used))  # trained, evaluated
    return head + [ours, str(len(used)), join("steps"), ", ".join(sorted(hardware)),
                   ", ".join(sorted({short_commit(c, 10) for c in commits})),
                   ", ".join(sorted({str(m.get("date", "?"))[:10] for m in used})),
                   ", ".join(sorted({data_kind(m) for m in used}))]


def table(root: Path = ROOT) -> str:
    lines = ["| paper | dataset | metric | where | paper value | profile | ours (mean ± std over seeds) | seeds "
             "| steps | hardware | commit | date | data |", "|" + " --- |" * 13]
    for paper in PAPERS:
        for claim in claims(paper):
            for profile in PROFILES:
                lines.append("| " + " | ".join(row(claim, paper, profile, runs(root, paper, claim.dataset, profile)))
                             + " |")
    return "\n".join(lines)


def updated(text: str, body: str) -> str:
    if BEGIN not in text or END not in text:
        raise ValueError(f"reports/README.md lacks the markers {BEGIN} ... {END}")
    head, rest = text.split(BEGIN, 1)
    return head + BEGIN + "\n" + body + "\n" + END + rest.split(END, 1)[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m papers.results", description=__doc__)
    p.add_argument("--check", action="store_true", help="exit 1 if reports/README.md is not up to date")
    args = p.parse_args(argv)
    readme = ROOT / "reports" / "README.md"
    text = readme.read_text()
    new = updated(text, table())
    if args.check:
        if new != text:
            print("reports/README.md differs from the metrics files: run `python -m papers.results`", file=sys.stderr)
            return 1
        return 0
    readme.write_text(new)
    print(f"wrote {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
