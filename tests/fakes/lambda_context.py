"""A Lambda context for tests: the same one the local dev server uses."""

from tools.devserver.lambda_host import FakeLambdaContext

__all__ = ["FakeLambdaContext"]
