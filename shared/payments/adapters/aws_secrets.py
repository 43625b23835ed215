"""Secrets Manager and SSM reads with the standard library, for the webhook's cold start.

The other functions read their secrets through Powertools Parameters (boto3, in the Lambda
runtime; ``payments.adapters.secrets``). The webhook cannot afford boto3 on its path, so it
reads its two signing secrets with the same SigV4 client it queues events with
(``payments.adapters.aws_sigv4``), through the same cache and rules: values kept per
container and re-read after ``MAX_AGE_SECONDS``, an unreadable secret at cold start a
configuration error naming its variable, a failed re-read keeping the last value.
"""

from __future__ import annotations

from functools import lru_cache

from payments.adapters.aws_sigv4 import AwsJsonClient
from payments.adapters.secrets import SecretCache


@lru_cache(maxsize=8)
def _client(service: str, region: str | None) -> AwsJsonClient:
    if service == "ssm":
        return AwsJsonClient("ssm", "AmazonSSM", json_version="1.1", region=region)
    return AwsJsonClient("secretsmanager", "secretsmanager", json_version="1.1", region=region)


def fetch_secret(reference: str) -> str:
    """The value kept at ``reference``: a Secrets Manager ARN or name, or an SSM parameter's
    ARN (``arn:aws:ssm:<region>:<account>:parameter/<name>``)."""
    parts = reference.split(":")
    is_arn = reference.startswith("arn:") and len(parts) >= 6
    service = parts[2] if is_arn else "secretsmanager"
    region = parts[3] if is_arn and parts[3] else None
    if service == "ssm":
        answer = _client("ssm", region).call(
            "GetParameter", {"Name": reference, "WithDecryption": True}
        )
        value = answer["Parameter"]["Value"]
    else:
        answer = _client("secretsmanager", region).call("GetSecretValue", {"SecretId": reference})
        value = answer["SecretString"]
    if not isinstance(value, str):
        raise TypeError("a secret must be a text value")
    return value


# One cache per container, like the Powertools one of the other functions.
webhook_secrets = SecretCache(fetch_secret)
