"""`python -m ade_engine`: `--version` answers before anything else is imported."""

import sys

if sys.argv[1:] == ["--version"]:
    from . import __version__

    sys.stdout.write(f"ade-engine {__version__}\n")
    raise SystemExit(0)

from .cli import main  # noqa: E402

sys.exit(main())
