"""Build soundlm's reference curves from a recipe's runs.

    python recipes/reference_curves.py build --work work/speech-tiny [--codec-run work/codec]

writes src/soundlm/assets/reference_curves.json and docs/reference_curves/<stage>.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from soundlm.doctor.build import DEFAULT_ASSET, build_reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="read the runs, write the asset and the figures")
    build.add_argument("--work", type=Path, required=True, help="the `soundlm recipe` --work folder")
    build.add_argument("--codec-run", type=Path, help="a codec run trained apart with the recipe's codec settings")
    build.add_argument("--out", type=Path, default=DEFAULT_ASSET, help="the asset to write")
    build.add_argument("--figures", type=Path, default=Path("docs/reference_curves"), help="folder for the PNGs")
    build.add_argument("--recipe", default="speech-tiny")
    args = parser.parse_args()
    build_reference(args.work, args.out, args.figures, args.codec_run, args.recipe)
    print(f"wrote {args.out} and {args.figures}/*.png")


if __name__ == "__main__":
    main()
