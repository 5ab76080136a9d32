"""``python -m gpuptc``."""

from gpuptc.cli import main

raise SystemExit(main())
