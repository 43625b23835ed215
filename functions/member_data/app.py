"""Member data API: a member's payment history, export and erasure; admin erasure, analytics
and payment search.

Every route authenticates the Memberstack token first; member reads then run under RLS as that
member, admin routes refuse anyone not in ADMIN_MEMBER_IDS.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.utilities.typing import LambdaContext

from payments import admin_payments, analytics, member_data, pipeline
from payments.adapters.store import Store, get_store
from payments.auth import Member, current_member, require_admin
from payments.deadline import start_invocation
from payments.http import (
    handle_http,
    json_response,
    make_resolver,
    ok_response,
    require_known_query,
)
from payments.observability import logger
from payments.runtime import bootstrap
from payments.settings import get_settings

# Personal data: never kept by a browser or a shared cache.
NO_STORE = {"Cache-Control": "no-store"}
MEMBER_ID_PATTERN = r"^[A-Za-z0-9_\-]{1,128}$"

app = make_resolver()


def _member(*, confirm: bool = False) -> Member:
    return current_member(app.current_event.headers, confirm=confirm)


def _store() -> Store:
    return get_store(get_settings())


@app.get(
    "/v1/me/payments",
    summary="The member's payment history, newest first",
    responses=ok_response(member_data.PaymentHistoryPage, "One page of payments", 200, 401, 503),
)
def my_payments(
    limit: Annotated[int, Query(ge=1, le=member_data.MAX_PAGE_SIZE)] = (
        member_data.DEFAULT_PAGE_SIZE
    ),
    cursor: Annotated[str | None, Query(max_length=member_data.MAX_CURSOR_LENGTH)] = None,
) -> Response[str]:
    member = _member()
    page = member_data.payment_history(_store(), member.id, limit=limit, cursor=cursor)
    return json_response(200, page.model_dump(mode="json"), NO_STORE)


@app.get(
    "/v1/me/data",
    summary="Export everything we hold about the member",
    responses=ok_response(member_data.MemberDataExport, "The member's data", 200, 401, 503),
)
def export_my_data() -> Response[str]:
    # Everything we hold about a member: Memberstack itself confirms the token (payments.auth).
    member = _member(confirm=True)
    export = member_data.export_member_data(_store(), member.id)
    return json_response(200, export.model_dump(mode="json"), NO_STORE)


@app.delete(
    "/v1/me/data",
    summary="Erase the member's personal data (Stripe's own records are not touched)",
    responses=ok_response(member_data.ErasureReceipt, "Erased", 200, 401, 409, 503),
)
def erase_my_data() -> Response[str]:
    # Cannot be undone: Memberstack itself confirms the token (payments.auth).
    member = _member(confirm=True)
    receipt = member_data.erase_member_data(_store(), member.id, requested_by=member.id)
    return json_response(200, receipt.model_dump(mode="json"), NO_STORE)


@app.delete(
    "/v1/admin/members/<member_id>/data",
    summary="Erase a member's personal data (admin)",
    responses=ok_response(member_data.ErasureReceipt, "Erased", 200, 401, 403, 409, 503),
)
def erase_member_data(
    member_id: Annotated[str, Path(pattern=MEMBER_ID_PATTERN)],
) -> Response[str]:
    admin = _member()
    require_admin(admin, "erase_member_data")
    receipt = member_data.erase_member_data(_store(), member_id, requested_by=admin.id)
    return json_response(200, receipt.model_dump(mode="json"), NO_STORE)


@app.get(
    "/v1/admin/analytics",
    summary="Payment trends by product (admin)",
    responses=ok_response(analytics.AnalyticsReport, "The figures", 200, 400, 401, 403, 422, 503),
)
def payment_analytics(
    date_from: Annotated[date, Query(alias="from")],
    date_to: Annotated[date, Query(alias="to")],
) -> Response[str]:
    admin = _member()
    require_admin(admin, "analytics")
    report = analytics.analytics_report(_store(), date_from, date_to)
    return json_response(200, report.model_dump(mode="json", by_alias=True), NO_STORE)


@app.get(
    "/v1/admin/pipeline",
    summary="Dead letters, pending dispatches and the last reconcile run (admin)",
    responses=ok_response(pipeline.PipelineStatus, "The pipeline now", 200, 401, 403, 503),
)
def pipeline_status() -> Response[str]:
    admin = _member()
    require_admin(admin, "pipeline")
    settings = get_settings()

    def dead_letter_depth() -> int | None:
        if settings.webhook_dlq_url is None:
            return None
        from payments.adapters.queue import queue_depth

        return queue_depth(settings.webhook_dlq_url, settings.aws_endpoint_url)

    status = pipeline.pipeline_status(_store(), dead_letter_depth)
    return json_response(200, status.model_dump(mode="json"), NO_STORE)


@app.get(
    "/v1/admin/payments",
    summary="Find payments by member, payment intent or date range, with their refunds (admin)",
    responses=ok_response(
        admin_payments.AdminPaymentsPage, "One page of payments", 200, 400, 401, 403, 422, 503
    ),
)
def find_payments(
    member: Annotated[
        str | None, Query(pattern=admin_payments.MEMBER_ID_PATTERN, description="Memberstack id")
    ] = None,
    payment_intent: Annotated[
        str | None, Query(pattern=admin_payments.PAYMENT_INTENT_PATTERN)
    ] = None,
    date_from: Annotated[date | None, Query(alias="from", description="First UTC day")] = None,
    date_to: Annotated[date | None, Query(alias="to", description="Last UTC day")] = None,
    limit: Annotated[int, Query(ge=1, le=admin_payments.MAX_PAGE_SIZE)] = (
        admin_payments.DEFAULT_PAGE_SIZE
    ),
    cursor: Annotated[str | None, Query(max_length=admin_payments.MAX_CURSOR_LENGTH)] = None,
) -> Response[str]:
    admin = _member()
    require_admin(admin, "find_payments")
    require_known_query(
        app.current_event.query_string_parameters,
        "member",
        "payment_intent",
        "from",
        "to",
        "limit",
        "cursor",
    )
    search = admin_payments.PaymentSearch(
        member=member, payment_intent=payment_intent, date_from=date_from, date_to=date_to
    )
    page = admin_payments.find_payments(_store(), search, limit=limit, cursor=cursor)
    return json_response(200, page.model_dump(mode="json"), NO_STORE)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    bootstrap("memberstack_secret_key", "memberstack_app_id", store=True)
    start_invocation(context)
    return handle_http(app, event, context)
