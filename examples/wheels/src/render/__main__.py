import os
import sys
from importlib.metadata import version

import markdown_it
import markupsafe
from markupsafe import _speedups  # the compiled extension: fails if only the pure fallback is there


def main(argv):
    text = argv[0] if argv else "# coex\n\n*PyPI* wheels in a conda environment"
    html = markdown_it.MarkdownIt().render(text).strip().replace("\n", " ")
    print("markdown-it-py %s: %s" % (version("markdown-it-py"), html))
    for arg in argv[1:]:
        print("markupsafe %s (%s): %s" % (
            version("markupsafe"), os.path.basename(_speedups.__file__), markupsafe.escape(arg)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
