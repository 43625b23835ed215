"""The OpenAPI description of the webhook route (``tools/openapi.py`` reads it).

Kept out of ``app.py`` so the function never imports the resolver at run time.
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Header
from pydantic import BaseModel

from payments.http import make_resolver, ok_response

app = make_resolver()


class Received(BaseModel):
    received: bool


@app.post(
    "/v1/webhooks/stripe",
    summary="Receive a Stripe event (signed); queue it for processing",
    responses=ok_response(Received, "The event is queued", 200, 400, 413),
)
def receive_stripe_event(
    stripe_signature: Annotated[
        str, Header(description="Stripe's t=...,v1=... signature of the raw body")
    ],
) -> Response[str]:
    raise NotImplementedError("documentation only: functions/webhook/app.py serves this route")
