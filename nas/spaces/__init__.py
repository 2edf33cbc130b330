"""Built-in search spaces (importing registers them)."""
from nas.spaces import efficientformerv2, elasticvit  # noqa: F401
