"""python -m common.metrics fid-pack --out PATH | fid-bound --half PATH [--n 500] | fid-deferred --images DIR PATH...

fid-pack: the Inception network with float16 weights (for machines that carry little); fid-bound: FID
of generated scenes with the float32 network and with that copy (the difference the rounding makes);
fid-deferred: finish every "deferred" FID in the metrics files under PATH (an evaluation run without the
network and with $OCREPRO_FID_DEFER=DIR saved its images in DIR), in place.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from common.data import generate_split
from common.metrics.fid import FIDUnavailable, fid_difference, pack_half
from common.metrics import generative
from common.provenance import provenance


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
    fd = sub.add_parser("fid-deferred", help="finish the deferred FIDs of metrics files from their saved images")
    fd.add_argument("--images", type=Path, required=True, help="the folder $OCREPRO_FID_DEFER named")
    fd.add_argument("paths", type=Path, nargs="+", help="metrics.json files, or folders searched for them")
    args = p.parse_args(argv)
    try:
        if args.command == "fid-pack":
            print(f"wrote {pack_half(args.out)} ({args.out.stat().st_size / 2**20:.1f} MiB)")
            return 0
        if args.command == "fid-deferred":
            return finish_files(args.images, args.paths)
        sets = [torch.from_numpy(generate_split(name, args.n, 0, "test")[1]["image"]).permute(0, 3, 1, 2)
                for name in (args.real, args.fake)]
        print(json.dumps({"real": args.real, "fake": args.fake, **fid_difference(args.half, *sets)}))
    except (FIDUnavailable, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def deferred_entries(node, found: list) -> list[dict]:
    """Every dict in a parsed metrics file whose status is "deferred", depth first."""
    if isinstance(node, dict):
        if node.get("status") == "deferred" and "deferred" in node:
            found.append(node)
        for value in node.values():
            deferred_entries(value, found)
    elif isinstance(node, list):
        for value in node:
            deferred_entries(value, found)
    return found


def finish_files(images: Path, paths: list[Path]) -> int:
    """Compute every deferred FID under `paths` from the images in `images`; each file rewritten atomically
    once all of its entries are done, with where they were computed."""
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("metrics.json")))]
    backend, features = None, {}  # the network loaded once, each saved image set's features computed once
    for path in files:
        record = json.loads(path.read_text())
        entries = deferred_entries(record, [])
        if not entries:
            continue
        backend = backend or generative.resolve_backend()
        for entry in entries:
            done = generative.finish_deferred(entry, images, backend, features)
            entry.clear()
            entry.update(done, fid_provenance=provenance())
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(path)
        print(f"{path}: {len(entries)} FID(s) computed: " + ", ".join(f"{e['fid']:.2f}" for e in entries))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
