"""`python -m tfcnn`: the same entry point as the `tfcnn` console script."""

import sys

from tfcnn.cli import main

sys.exit(main())
