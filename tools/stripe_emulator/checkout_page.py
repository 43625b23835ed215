"""The hosted Checkout page: plain HTML a person or a browser test can pay with.

Element ids are stable for browser tests: ``#pay-success``, ``#pay-decline``, ``#pay-delayed``
(buttons), ``#email``, ``#card-number`` (inputs), ``#amount``, ``#back-to-merchant`` (link on
the declined page) and ``#error`` (message on error pages).
"""

from __future__ import annotations

from html import escape
from typing import Any

from tools.stripe_emulator.objects import format_amount

SUCCESS_CARD = "4242 4242 4242 4242"
DECLINE_CARD = "4000 0000 0000 0002"

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;background:#f6f9fc;color:#1a1f36;
margin:0;padding:2rem}
main{max-width:28rem;margin:0 auto;background:#fff;border-radius:8px;padding:2rem;
box-shadow:0 2px 8px rgba(0,0,0,.08)}
h1{font-size:1.1rem;margin:0 0 .25rem}
.amount{font-size:2rem;font-weight:600;margin:.25rem 0 1rem}
table{width:100%;border-collapse:collapse;margin-bottom:1rem}
td{padding:.25rem 0}td.num{text-align:right}
label{display:block;font-size:.85rem;margin-top:.75rem}
input{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem;margin-top:.25rem}
button{width:100%;padding:.7rem;margin-top:.6rem;font-size:1rem;border:0;border-radius:6px;
cursor:pointer;color:#fff;background:#635bff}
button.secondary{background:#8792a2}
.error{color:#df1b41;font-weight:600}
.badge{display:inline-block;font-size:.75rem;background:#ffde92;padding:.1rem .4rem;
border-radius:4px;margin-bottom:.75rem}
"""


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><span class=badge>TEST MODE · Stripe emulator</span>{body}</main>"
        "</body></html>"
    )


def render_checkout(session: dict[str, Any], line_items: list[dict[str, Any]]) -> str:
    """The payment page for an open session."""
    currency = session["currency"]
    rows = "".join(
        f"<tr><td>{escape(item['description'] or item['price']['id'])} × {item['quantity']}"
        f"{_interval_suffix(item['price'])}</td>"
        f"<td class=num>{escape(format_amount(item['amount_total'], currency))}</td></tr>"
        for item in line_items
    )
    names = ", ".join(item["description"] or item["price"]["id"] for item in line_items)
    email = session.get("customer_email") or ""
    action = f"/checkout/{escape(session['id'])}/pay"
    total = format_amount(session["amount_total"], currency)
    body = f"""
<h1 id=product-name>{escape(names)}</h1>
<div class=amount id=amount>{escape(total)}</div>
<table>{rows}</table>
<form method=post action="{action}">
  <label for=email>Email</label>
  <input id=email name=email type=email value="{escape(email)}" placeholder="you@example.com">
  <label for=card-number>Card number</label>
  <input id=card-number name=card_number value="{SUCCESS_CARD}" autocomplete=off>
  <button id=pay-success name=outcome value=success type=submit>Pay {escape(total)}</button>
  <button id=pay-decline name=outcome value=decline type=submit class=secondary>Pay with
    {DECLINE_CARD} (declined)</button>
  <button id=pay-delayed name=outcome value=delayed type=submit class=secondary>Pay by bank
    debit (settles later)</button>
</form>
"""
    return _page(f"Pay {total}", body)


def _interval_suffix(price: dict[str, Any]) -> str:
    recurring = price.get("recurring")
    if not recurring:
        return ""
    count = recurring["interval_count"]
    every = recurring["interval"] if count == 1 else f"{count} {recurring['interval']}s"
    return f" <small>per {escape(every)}</small>"


def render_declined(session: dict[str, Any]) -> str:
    """The page shown after a declined card; links back to the merchant's cancel URL."""
    back = session.get("cancel_url") or f"/checkout/{session['id']}"
    body = f"""
<h1>Payment failed</h1>
<p class=error id=error>Your card was declined.</p>
<p><a id=try-again href="/checkout/{escape(session["id"])}">Try another card</a></p>
<p><a id=back-to-merchant href="{escape(back)}">Back to the merchant</a></p>
"""
    return _page("Your card was declined", body)


def render_error(message: str) -> str:
    """An error page (expired or completed session, unknown id)."""
    body = f"<h1>Checkout unavailable</h1><p class=error id=error>{escape(message)}</p>"
    return _page("Checkout unavailable", body)


def render_complete(session: dict[str, Any]) -> str:
    """Shown after payment when the session has no ``success_url``."""
    status = "Payment received" if session["payment_status"] == "paid" else "Payment processing"
    body = f"<h1 id=complete>{status}</h1><p>Session {escape(session['id'])}</p>"
    return _page(status, body)


def card_outcome(card_number: str | None) -> str:
    """The outcome a typed card number stands for (Stripe's test cards)."""
    digits = "".join(ch for ch in card_number or "" if ch.isdigit())
    return "decline" if digits == DECLINE_CARD.replace(" ", "") else "success"
