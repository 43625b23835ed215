"""Customer portal sessions (``POST /v1/billing_portal/sessions``) and the hosted portal page.

A session starts from Stripe's example ``billing_portal.session`` with the customer, the
``return_url`` and a ``url`` on this emulator. The page at that URL is a stand-in for Stripe's
portal: it lists the customer's invoices and subscriptions as the emulator holds them and
links back to ``return_url``. Stable element ids for browser tests: ``#portal-customer``,
``#portal-invoices``, ``#return-to-merchant``.
"""

from __future__ import annotations

from html import escape
from typing import Any

from tools.stripe_emulator import objects
from tools.stripe_emulator.checkout_page import _page  # the hosted Checkout page's look
from tools.stripe_emulator.errors import StripeError
from tools.stripe_emulator.state import Store, new_id

PAGE_PREFIX = "/billing_portal/sessions/"


def create_session(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/billing_portal/sessions``: the customer must exist, like in Stripe."""
    customer = store.get(params.get("customer"), "customer", param="customer")
    if "flow_data" in params:
        # The service opens the portal's home page only; flows are not emulated.
        raise StripeError("flow_data is not supported by the emulator.", param="flow_data")
    session = objects.fixture("billing_portal.session")
    session_id = new_id("bps_")
    session.update(
        id=session_id,
        livemode=False,
        created=store.now(),
        customer=customer["id"],
        configuration=params.get("configuration") or "bpc_emulator_default",
        flow=None,
        locale=params.get("locale"),
        on_behalf_of=params.get("on_behalf_of"),
        return_url=params.get("return_url"),
        url=f"{store.base_url}{PAGE_PREFIX}{session_id}",
    )
    return store.add(session)


def render(store: Store, session_id: str) -> tuple[int, str]:
    """``(status, HTML)`` of the hosted portal page of a session."""
    session = store.objects.get(session_id)
    if session is None or session.get("object") != "billing_portal.session":
        return 404, _page("Portal unavailable", "<p class=error id=error>No such session.</p>")
    customer_id = session["customer"]
    invoices = [i for i in store.all("invoice") if i.get("customer") == customer_id]
    subscriptions = [s for s in store.all("subscription") if s.get("customer") == customer_id]
    rows = "".join(
        f"<tr><td>{escape(str(i.get('number') or i['id']))}</td>"
        f"<td>{escape(str(i.get('status')))}</td>"
        f"<td class=num>{escape(objects.format_amount(i['amount_due'], i['currency']))}</td></tr>"
        for i in invoices
    )
    plans = "".join(
        f"<li>{escape(s['id'])}: {escape(str(s.get('status')))}</li>" for s in subscriptions
    )
    back = session.get("return_url")
    link = (
        f'<p><a id=return-to-merchant href="{escape(back)}">Return to the site</a></p>'
        if back
        else ""
    )
    body = f"""
<h1>Payment method and invoices</h1>
<p id=portal-customer>Customer {escape(customer_id)}</p>
<p>On Stripe, this is where the card is updated and invoices are downloaded.</p>
<h2>Invoices</h2>
<table id=portal-invoices>{rows or "<tr><td>No invoices yet.</td></tr>"}</table>
<h2>Subscriptions</h2>
<ul>{plans or "<li>None.</li>"}</ul>
{link}
"""
    return 200, _page("Payment method and invoices", body)
