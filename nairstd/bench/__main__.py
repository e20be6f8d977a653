"""`python -m nairstd.bench ...` = `python -m nairstd bench ...`."""

from nairstd.bench.cli import main

raise SystemExit(main())
