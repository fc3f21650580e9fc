"""Running TorchServe: start and stop it, its Management API, its metrics, a scratch server for tests."""
