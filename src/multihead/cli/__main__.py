from multihead.cli import main

raise SystemExit(main())
