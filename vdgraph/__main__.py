"""`python -m vdgraph ...` is the same as the `vdgraph` command."""

import sys

from vdgraph.cli import main

sys.exit(main())
