"""`python -m keras_rmt`: see `keras_rmt/export/cli.py`."""

import sys

from keras_rmt.export.cli import main

if __name__ == "__main__":
    sys.exit(main())
