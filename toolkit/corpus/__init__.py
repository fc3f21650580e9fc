"""``python -m toolkit embed``: a corpus file in, vectors out (sharded, resumable, with a record of the model)."""
