"""make fidelity: every mode and int8 scheme on real MiniLM, real MPNet and the T5 shapes -> docs/benchmarks/."""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.bench.fidelity_report import main

if __name__ == "__main__":
    raise SystemExit(main())
