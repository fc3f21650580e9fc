"""TorchServe handler for INSTRUCTOR text embeddings and the code behind it.

Modules, one job each:

- ``errors``: typed errors, each with the HTTP status it maps to.
- ``settings``: the frozen, validated ``handler:`` section of ``model-config.yaml``.
- ``request_parsing``: request bodies to validated pairs (no torch import).
- ``batching``: flatten a dynamic batch into rows, plan length-sorted micro-batches, pad them.
- ``model_files``: read a sentence-transformers model folder (modules, pooling, Dense).
- ``precision``: the mode a worker runs (``auto`` decided from the device and CPU flags).
- ``engines``: the forward pass (ids + mask -> last hidden state), one module per runtime.
- ``int8``: per-token int8 Linear layers for the torch engine.
- ``fidelity``: the build-time fidelity figures an archive carries.
- ``pooling``: the pooling mode from ``1_Pooling/config.json`` and every pooler (mean, CLS, max).
- ``encoder``: tokenize, call the engine, pool with the per-row instruction mask, Dense, Normalize.
- ``cpus``, ``placement``: a worker's CPUs; its device and threads (no ``ts`` import).
- ``torchserve_handler``: the thin TorchServe glue (``InstructorHandler``).
"""
