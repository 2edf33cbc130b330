"""Built-in search spaces (importing registers them)."""
from nas.spaces import elasticvit  # noqa: F401
