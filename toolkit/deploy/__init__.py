"""Deploying: the image (build, entrypoint, healthcheck) and KServe storage and manifests."""
