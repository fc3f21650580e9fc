"""Tooling around the handler: test models, model sources, archives, the server, the Management API."""
