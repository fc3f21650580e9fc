"""make fidelity: every mode and int8 scheme on real MiniLM, real MPNet and the T5 shapes -> docs/benchmarks/.

The same as ``python -m toolkit fidelity-report``.
"""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.commands import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("fidelity-report"))
