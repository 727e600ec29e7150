"""``python -m multihead_apps.demo``: the demo without the installed ``multihead`` entry point."""

from multihead_apps.demo.cli import main

raise SystemExit(main())
