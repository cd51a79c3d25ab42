"""python -m common.metrics.judges train --task {generation_accuracy,s_acc} --out DIR [--seed 0] [--steps N] [--report F]
python -m common.metrics.judges score --judge DIR (--images FOLDER | --dataset DIR [--split test]) [--n 128] [--out F]
python -m common.metrics.judges card RECORD.json  (its tables as RECORD.md, for reports/judges/)

train: generator scenes labelled by the rule, a seeded run, the judge saved with its measured accuracy.
score: a folder of generated PNGs judged, the accuracy with its 95 % Wilson interval and the judge's hash;
--dataset judges a prepared dataset's split instead (e.g. the published ShapeStacks converted with
`python -m common.data.convert`): every real scene holds a plausible stack, so the rate is the judge's
accuracy on real images."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common.hub import CheckpointError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m common.metrics.judges", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--task", required=True, choices=["generation_accuracy", "s_acc"])
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--n-train", type=int, default=20_000)
    t.add_argument("--n-test", type=int, default=2_000)
    t.add_argument("--steps", type=int, default=3_000)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--report", type=Path, default=None, help="also write the judge's measured record here (JSON)")
    s = sub.add_parser("score")
    s.add_argument("--judge", type=Path, required=True)
    images = s.add_mutually_exclusive_group(required=True)
    images.add_argument("--images", type=Path, help="a folder of generated .png images")
    images.add_argument("--dataset", type=Path, help="a prepared dataset folder (common/data/store.py)")
    s.add_argument("--split", default="test", help="the --dataset split to judge")
    s.add_argument("--n", type=int, default=None, help="judge the first n (SRI/LOM: 100, SVQ: 128)")
    s.add_argument("--out", type=Path, default=None, help="write the result here as JSON")
    c = sub.add_parser("card")
    c.add_argument("record", type=Path, help="a record written by train --report")
    args = p.parse_args(argv)
    try:
        if args.command == "train":
            from common.metrics.judges.train import train
            record = train(args.task, args.out, args.seed, args.n_train, args.n_test, args.steps, args.batch_size)
            if args.report:
                args.report.parent.mkdir(parents=True, exist_ok=True)
                args.report.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
            print(json.dumps({"accuracy": {k: v.get("overall", v) for k, v in record["accuracy"].items()},
                              "anchors": record["anchors"]}))
        elif args.command == "card":
            from common.metrics.judges.report import write
            print(write(args.record))
        else:
            from common.metrics.judges.score import load_pngs, score
            if args.images:
                images = load_pngs(args.images)
            else:
                from common.data.store import load_tensors
                images = load_tensors(args.dataset, args.split)["image"].permute(0, 3, 1, 2).float() / 255
            record = score(args.judge, images, args.n) | {"images": str(args.images or f"{args.dataset}:{args.split}")}
            if args.out:
                args.out.write_text(json.dumps(record, indent=2))
            print(json.dumps(record))
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
