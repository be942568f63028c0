"""Command line: ``python -m fastconv {train,bench,info}``.

Each subcommand lives in its own module (``train.py``, ``bench.py``); this file only parses
the command name and hands the remaining arguments on.
"""

from __future__ import annotations

import argparse
import sys


def _info(argv: list[str]) -> int:
    import numba
    import numpy as np

    from . import __version__, config

    print(f"fastconv {__version__}")
    print(f"numpy {np.__version__}, numba {numba.__version__}, threads {numba.get_num_threads()}")
    print(f"kernel cache: {config.CACHE_DIR}")
    try:
        from .backends import cuda_available

        print(f"cuda: {'available' if cuda_available() else 'not available'}")
    except ImportError:
        print("cuda: not available (install fastconv[cuda])")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m fastconv", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["train", "bench", "info"], help="what to run")
    args, rest = parser.parse_known_args(argv[:1])
    if args.command == "train":
        from .train import main as train_main

        return train_main(argv[1:])
    if args.command == "bench":
        from .bench import main as bench_main

        return bench_main(argv[1:])
    return _info(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
