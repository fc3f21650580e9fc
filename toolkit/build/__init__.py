"""Building an archive: staging, per-engine export, the fidelity gate and its probe pairs, mode choice."""
