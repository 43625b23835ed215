"""The naive baseline: what most Lambda examples do at module level.

Every SDK the service uses is imported eagerly, whether the function needs it or not, before
the real handler is loaded. The benchmark runs each function once through this module and
once directly; the difference is what lazy, per-function imports save.
"""

import os

import boto3  # noqa: F401
import pydantic  # noqa: F401
import sentry_sdk  # noqa: F401
import stripe  # noqa: F401
import supabase  # noqa: F401
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver  # noqa: F401

logger = Logger()
tracer = Tracer()
metrics = Metrics()

lambda_handler = __import__(
    f"functions.{os.environ['BENCH_FUNCTION']}.app", fromlist=["lambda_handler"]
).lambda_handler
