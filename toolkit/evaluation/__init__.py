"""``make eval``: retrieval quality of the served model on BEIR-format data.

Modules, one job each:

- ``beir_data``: read and check a BEIR folder (errors name the file and line).
- ``tasks``: INSTRUCTOR's per-task instructions, MTEB's self-id rule, published figures.
- ``served_model``: which archive, precision and pooling a served name runs.
- ``embedding``: embed through the server with the project's client; the disk cache.
- ``retrieval``: exact cosine top-k in float32, in chunks.
- ``metrics``: nDCG@10, Recall@100, MRR@10 with ir-measures.
- ``report``: the JSON and markdown reports.
- ``download``: fetch a public BEIR archive.
- ``cli``: the command line.
"""
