import os
import sys

import numpy as np

from hello import GREETING_VAR


def main(argv):
    squares = np.arange(1, 6) ** 2
    print("%s: numpy %s on Python %d.%d" % (
        os.environ.get(GREETING_VAR, "hello"), np.__version__, *sys.version_info[:2]))
    print("sum of squares 1..5 = %d" % squares.sum())
    print("prefix: %s" % sys.prefix)
    if argv:
        print("args: %s" % " ".join(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
