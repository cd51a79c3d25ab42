"""python -m common.metrics fid-pack --out PATH | fid-bound --half PATH [--n 500]

fid-pack: the Inception network with float16 weights (for machines that carry little); fid-bound: FID
of generated scenes with the float32 network and with that copy (the difference the rounding makes).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from common.data import generate_split
from common.metrics.fid import FIDUnavailable, fid_difference, pack_half


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m common.metrics")
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("fid-pack", help="the Inception network with float16 weights")
    pk.add_argument("--out", type=Path, required=True)
    bd = sub.add_parser("fid-bound", help="FID with float32 vs float16-stored weights on generated scenes")
    bd.add_argument("--half", type=Path, required=True)
    bd.add_argument("--n", type=int, default=500)
    bd.add_argument("--real", default="clevr6")
    bd.add_argument("--fake", default="clevr10")
    args = p.parse_args(argv)
    try:
        if args.command == "fid-pack":
            print(f"wrote {pack_half(args.out)} ({args.out.stat().st_size / 2**20:.1f} MiB)")
            return 0
        sets = [torch.from_numpy(generate_split(name, args.n, 0, "test")[1]["image"]).permute(0, 3, 1, 2)
                for name in (args.real, args.fake)]
        print(json.dumps({"real": args.real, "fake": args.fake, **fid_difference(args.half, *sets)}))
    except FIDUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
