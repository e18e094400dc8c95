"""``python -m anyfast_async``: the ``anyfast`` command line."""

from ._cli import main

raise SystemExit(main())
