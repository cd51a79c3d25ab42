"""A judge's measured record (the JSON `train --report` writes) as Markdown tables for reports/judges/."""
from __future__ import annotations

import json
from pathlib import Path


def _rate(v: dict) -> str:
    return f"{100 * v['accuracy']:.1f} % (n = {v['n']})"


def markdown(record: dict) -> str:
    """Accuracy per group, clean beside degraded; the reading scores (sprites); the two anchors; provenance."""
    acc, lines = record["accuracy"], [f"# Judge `{record['task']}`: measured accuracy", ""]
    lines += ["| group | clean | blurred (1 px) and noised (0.03) |", "| --- | --- | --- |"]
    lines += [f"| {g} | {_rate(v)} | {_rate(acc['degraded'][g])} |" for g, v in acc["clean"].items()]
    if "clean_reading" in acc:
        lines += ["", "| scenes where the judge read ... | clean | degraded |", "| --- | --- | --- |"]
        lines += [f"| {k.replace('_', ' ')} right | {100 * v:.1f} % | {100 * acc['degraded_reading'][k]:.1f} % |"
                  for k, v in acc["clean_reading"].items()]
    real, mixed = record["anchors"]["dataset"], record["anchors"]["composited"]
    lines += ["", "| anchor | judge's pass rate | rule's pass rate on the truth |", "| --- | --- | --- |",
              f"| the dataset's own scenes (n = {real['n']}) | {100 * real['judge_pass_rate']:.1f} % | "
              f"{100 * real['rule_pass_rate']:.1f} % |",
              f"| objects composited from different scenes (n = {mixed['n']}) | "
              f"{100 * mixed['judge_pass_rate']:.1f} % | not known |"]
    p = record["provenance"]
    lines += ["", f"Trained with seed {record['seed']} on {record['n_train']} scenes for {record['steps']} steps "
              f"(batch {record['batch_size']}, lr {record['lr']}), measured on {record['n_test']} held-out scenes; "
              f"commit {p['commit']}, {p['hardware']}, torch {p['torch']}, {p['date']}.", ""]
    return "\n".join(lines)


def write(record_path: str | Path) -> Path:
    """record.json -> record.md beside it."""
    path = Path(record_path)
    out = path.with_suffix(".md")
    out.write_text(markdown(json.loads(path.read_text())))
    return out
