"""`python -m provenance.cli`, the same as the `provenance` script."""

import sys

from provenance.cli import main

sys.exit(main())
