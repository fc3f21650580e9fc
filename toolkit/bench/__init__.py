"""``make bench``: the encoder's limit, an upstream-style baseline and our server, side by side."""
