"""``python -m pipeline.cli``: the ``liveness`` command without the console script."""

import sys

from pipeline.cli.main import main

sys.exit(main())
