"""python -m common.data {generate,convert,show}: make, import and look at scene datasets.

  generate NAME --out DIR --n-train N --n-val N --n-test N --seed S [--set key=value ...]
  convert SOURCE --in PATH --out DIR [--splits train=70000,test=rest] [--crop iodine|center|none] [--size N]
           [--max-objects N] [--min-objects N]
           (SOURCE: tetrominoes, multi_dsprites, objects_room, clevr_with_masks, emorl_h5, shapestacks, clevrtex, sysbinder)
  show DIR [--split train] [--n 8] [--png PATH]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from common.config import ConfigError, parse_overrides
from common.data.registry import GENERATORS, generate_dataset
from common.data.store import DatasetError, load_meta, load_split
from common.viz import colour_labels, grid, save_png


def _generate(args) -> None:
    sizes = {"train": args.n_train, "val": args.n_val, "test": args.n_test}
    tic = time.perf_counter()
    out = generate_dataset(args.name, args.out, sizes, args.seed, parse_overrides(args.set), args.force)
    n = sum(sizes.values())
    print(f"wrote {n} scenes to {out} ({n / (time.perf_counter() - tic):.0f} scenes/s including writing)")


def _convert(args) -> None:
    from common.data.convert import convert
    out = convert(args.source, args.input, args.out, args.splits, crop=args.crop, size=args.size,
                  max_objects=args.max_objects, count=args.count, overwrite=args.force, min_objects=args.min_objects)
    print(f"wrote {out}")


def _show(args) -> None:
    meta = load_meta(args.dir)
    batch = load_split(args.dir, args.split)
    images = torch.tensor(batch["image"][: args.n]).permute(0, 3, 1, 2).float() / 255
    masks = colour_labels(torch.tensor(batch["mask"][: args.n]), meta.num_background)
    png = args.png or Path(args.dir) / f"{args.split}.png"
    save_png(grid([images, masks]), png, scale=max(1, 128 // meta.image_size[0]))
    print(f"wrote {png}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m common.data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="procedural dataset")
    g.add_argument("name", choices=sorted(GENERATORS))
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--n-train", type=int, default=0)
    g.add_argument("--n-val", type=int, default=0)
    g.add_argument("--n-test", type=int, default=0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="generator parameter")
    g.add_argument("--force", action="store_true", help="replace an existing DIR")
    c = sub.add_parser("convert", help="published release -> scene schema")
    c.add_argument("source")
    c.add_argument("--in", dest="input", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--splits", default="train=rest", help="split sizes in record order, e.g. train=70000,test=rest")
    c.add_argument("--crop", default=None, help="CLEVR: iodine ([29:221, 64:256]), center ([24:216, 64:256]) or none")
    c.add_argument("--size", type=int, default=None, help="resize to SIZE x SIZE (image bilinear, mask nearest)")
    c.add_argument("--max-objects", type=int, default=None, help="CLEVR6: 6; keep scenes with at most this many")
    c.add_argument("--min-objects", type=int, default=None,
                   help="keep scenes with at least this many foreground objects (IODINE Fig. 9: 7)")
    c.add_argument("--count", default="foreground", help="what --max-objects counts: foreground, oclf, iodine-release")
    c.add_argument("--force", action="store_true")
    s = sub.add_parser("show", help="PNG grid of images and masks")
    s.add_argument("dir", type=Path)
    s.add_argument("--split", default="train")
    s.add_argument("--n", type=int, default=8)
    s.add_argument("--png", type=Path, default=None)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        {"generate": _generate, "convert": _convert, "show": _show}[args.cmd](args)
    except (ConfigError, DatasetError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
