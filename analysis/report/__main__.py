"""`python -m analysis.report results/<study>`: see `analysis.report.build`."""

import sys

from analysis.report.build import main

sys.exit(main())
