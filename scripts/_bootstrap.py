"""Put the repository root on ``sys.path`` so scripts run as ``python scripts/NAME.py``.

The handler package is deliberately not pip-installed: the TorchServe worker must import it
from the archive, never from this checkout.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
