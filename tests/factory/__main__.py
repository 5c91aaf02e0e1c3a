"""CLI: build a test conda channel and print its path.

    python -m tests.factory tiny DIR              # tiny channel into DIR (indexed)
    python -m tests.factory bad DIR               # the broken-packages channel into DIR
    python -m tests.factory realistic [--out DIR] # cached realistic channel (or built into DIR)
"""
import argparse
import os
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.factory", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="tier", required=True)
    t = sub.add_parser("tiny", help="build the tiny synthetic channel into DIR")
    t.add_argument("dir")
    b = sub.add_parser("bad", help="build the broken-packages channel into DIR")
    b.add_argument("dir")
    r = sub.add_parser("realistic", help="build (or reuse) the realistic channel")
    r.add_argument("--out", help="build into this directory instead of the cache")
    args = ap.parse_args(argv)
    t0 = time.time()
    try:
        if args.tier == "tiny":
            from tests.factory import tiny

            path = tiny.build(args.dir).path
        elif args.tier == "bad":
            from tests.factory import tiny

            path = tiny.build_bad(args.dir).path
        else:
            from tests.factory import realistic

            path = realistic.ensure(out=args.out)
    except (RuntimeError, OSError) as e:
        print("error: building the %s channel failed: %s" % (args.tier, e), file=sys.stderr)
        return 1
    print(path)
    print("(%s channel ready in %.2f s)" % (args.tier, time.time() - t0), file=sys.stderr)
    return 0


if __name__ == "__main__":
    # py-rattler's runtime threads can crash CPython's finalization (seen in CI: "Fatal Python
    # error: PyGILState_Release" after the channel was built, exit status 134): leave the way the
    # library's command lines do, with os._exit after flushing.
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
