"""``python -m toolkit <command>`` (see :mod:`toolkit.commands`)."""

from toolkit.commands import main

raise SystemExit(main())
