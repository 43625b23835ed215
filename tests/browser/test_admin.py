"""The admin console in a real browser: the demo's admin page carries the embed and
payments-admin.js with one ``data-payments-admin`` block, against the whole local stack."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from tests.browser.support import (
    BROWSER,
    LocalStack,
    assert_every_control_is_labelled,
    assert_focus_is_visible,
    new_member,
    sign_in,
    tab_to,
)

pytestmark = BROWSER

ADMIN = "[data-payments-admin]"


def _pe(key: str) -> str:
    return f'{ADMIN} [data-pe="{key}"]'


def _open_console(page: Any, stack: LocalStack, member_id: str) -> None:
    sign_in(page, stack, member_id, path="/admin.html")


def test_an_admin_finds_a_payment_refunds_part_of_it_and_sees_the_refund(
    page: Any, local_stack: LocalStack, shot: Callable[[str], Path]
) -> None:
    # Given two members who each paid for the Business Plan Builder ($99)
    buyer, other = new_member(), new_member()
    session = local_stack.buy(buyer)
    local_stack.buy(other)
    payment_intent = session["payment_intent"]

    # When an admin opens the console and searches by the buyer's member id
    _open_console(page, local_stack, local_stack.admin_id)
    page.wait_for_selector(f'{ADMIN}[data-admin-state="ready"]')
    assert assert_every_control_is_labelled(page, ADMIN) >= 8
    page.fill(_pe("find-member"), buyer)
    page.click(_pe("find-submit"))

    # Then only the buyer's payment is listed, with what is left to refund
    rows = page.locator(f"{_pe('find-table')} tbody tr")
    rows.first.wait_for()
    page.wait_for_function(
        "(s) => document.querySelectorAll(s).length === 1", arg=f"{_pe('find-table')} tbody tr"
    )
    assert rows.first.get_attribute("data-payment-intent") == payment_intent
    cells = rows.first.locator("td").all_inner_texts()
    assert cells[1:7] == [buyer, "Business Plan Builder", "$99", "$0", "$99", "Paid"]
    shot("found")

    # When they open it and ask to refund $10.50 as a duplicate, with a note
    page.click(f'[data-pe="open-{payment_intent}"]')
    assert page.inner_text(_pe("payment-refundable")) == "$99"
    assert page.inner_text(_pe("refunds-none")) == "No refunds yet."
    page.fill(_pe("refund-amount"), "10.50")
    page.select_option(_pe("refund-reason"), "duplicate")
    page.fill(_pe("refund-note"), "Charged twice by the bank's retry")
    page.click(_pe("refund-submit"))

    # Then a confirmation shows the amount, what stays refundable and the reason
    dialog = page.locator("dialog.pe-dialog[open]")
    dialog.wait_for()
    assert dialog.locator("h3").inner_text() == "Refund $10.50?"
    text = dialog.inner_text()
    assert "Left to refund after this: $88.50." in text
    assert "Reason: Duplicate payment." in text
    assert page.evaluate("() => document.activeElement.dataset.pe") == "dialog-cancel"
    shot("refund-confirmation")
    dialog.locator('[data-pe="dialog-refund"]').click()

    # And once confirmed the refund is listed with its note, and $88.50 is left
    page.locator(_pe("payment-message")).filter(has_text="Refunded $10.50").wait_for()
    refund_row = page.locator(f"{_pe('refunds-table')} tbody tr")
    assert refund_row.count() == 1
    assert refund_row.first.locator("td").all_inner_texts()[1:6] == [
        "$10.50",
        "succeeded",
        "Duplicate payment",
        "Charged twice by the bank's retry",
        local_stack.admin_id,
    ]
    assert page.inner_text(_pe("payment-refundable")) == "$88.50"
    assert rows.first.locator("td").all_inner_texts()[4:6] == ["$10.50", "$88.50"]
    # And Stripe holds exactly that refund
    refunds = local_stack.stripe("GET", "/v1/refunds", params={"payment_intent": payment_intent})
    assert [(r["amount"], r["reason"]) for r in refunds["data"]] == [(1050, "duplicate")]
    shot("refunded")

    # When they ask for more than is left, the console says so before calling anyone
    page.fill(_pe("refund-amount"), "90")
    page.click(_pe("refund-submit"))
    assert "more than what is left to refund ($88.50)" in page.inner_text(_pe("payment-message"))
    assert page.locator("dialog.pe-dialog[open]").count() == 0

    # And the same payment is found by its payment intent and by today's date
    page.fill(_pe("find-member"), "")
    page.fill(_pe("find-intent"), payment_intent)
    page.click(_pe("find-submit"))
    page.wait_for_function(
        "(s) => document.querySelectorAll(s).length === 1", arg=f"{_pe('find-table')} tbody tr"
    )
    today = datetime.now(UTC).date().isoformat()
    page.fill(_pe("find-intent"), "")
    page.fill(_pe("find-from"), today)
    page.fill(_pe("find-to"), today)
    page.click(_pe("find-submit"))
    page.wait_for_selector(f'{_pe("find-table")} tr[data-payment-intent="{payment_intent}"]')
    # And an id that is not a payment intent is explained rather than searched for
    page.fill(_pe("find-intent"), "ch_3NxYz")
    page.click(_pe("find-submit"))
    assert page.inner_text(_pe("find-message")).startswith("A payment intent starts with pi_")
    page.fill(_pe("find-intent"), "")

    # And the analytics chart draws the net of the range, one bar per product with figures
    page.fill(_pe("analytics-from"), today)
    page.fill(_pe("analytics-to"), today)
    page.click(_pe("analytics-submit"))
    page.locator(f"{_pe('analytics-chart')} > title").filter(
        has_text=f"{today} to {today}"
    ).wait_for(state="attached")
    bar = page.locator(f'{_pe("analytics-chart")} rect[data-product="business_plan_builder"]')
    nets = local_stack.rows(
        "select coalesce(sum(net), 0)::bigint from analytics_daily"
        " where product = 'business_plan_builder' and day = %s",
        today,
    )
    assert int(bar.get_attribute("data-net") or "0") == nets[0][0]
    assert page.locator(f"{_pe('analytics-chart')} rect[data-product]").count() == 1
    assert page.locator(f"{_pe('analytics-chart')} .pe-legend").all_text_contents() == [
        "Business Plan Builder"
    ]
    shot("analytics")


def test_a_member_who_is_not_an_admin_sees_not_allowed_and_no_data(
    page: Any, local_stack: LocalStack, shot: Callable[[str], Path]
) -> None:
    # Given a payment in the system
    local_stack.buy(new_member(), "website_audit_feedback")

    # When a visitor opens the console without signing in
    page.goto(f"{local_stack.api}/admin.html")
    page.wait_for_selector(f'{ADMIN}[data-admin-state="signed-out"]')
    assert "Please sign in" in page.inner_text(ADMIN)
    shot("signed-out")

    # And when a member who is not an admin signs in
    _open_console(page, local_stack, new_member())
    page.wait_for_selector(f'{ADMIN}[data-admin-state="forbidden"]')

    # Then they are told they are not allowed, and nothing of the console or its data is there
    assert "You are not allowed to use this console" in page.inner_text(ADMIN)
    assert page.locator(_pe("admin-view")).inner_html() == ""
    assert "$" not in page.inner_text(ADMIN)
    assert page.locator(f"{ADMIN} table, {ADMIN} form, {ADMIN} svg").count() == 0
    shot("not-allowed")


def test_the_console_works_with_the_keyboard_and_shows_where_the_focus_is(
    page: Any, local_stack: LocalStack, shot: Callable[[str], Path]
) -> None:
    # Given an admin on the console with one payment listed
    member_id = new_member()
    session = local_stack.buy(member_id, "social_media_email_campaign")
    _open_console(page, local_stack, local_stack.admin_id)
    page.wait_for_selector(f'{ADMIN}[data-admin-state="ready"]')

    # When they type a member id and press Enter, then Tab to the payment's Open button
    tab_to(page, _pe("find-member"))
    assert_focus_is_visible(page)
    page.keyboard.type(member_id)
    page.keyboard.press("Enter")
    page.wait_for_function(
        "(s) => document.querySelectorAll(s).length === 1", arg=f"{_pe('find-table')} tbody tr"
    )
    tab_to(page, f'{ADMIN} [data-pe^="open-pi_"]')
    assert_focus_is_visible(page)
    page.keyboard.press("Enter")

    # Then the payment opens with the focus on its heading, and Escape leaves a refund unasked
    page.wait_for_function(
        "() => document.activeElement.classList.contains('pe-heading')"
        " && document.activeElement.textContent.startsWith('Payment pi_')"
    )
    tab_to(page, _pe("refund-submit"))
    page.keyboard.press("Enter")
    page.locator("dialog.pe-dialog[open]").wait_for()
    assert_every_control_is_labelled(page, "dialog.pe-dialog[open]")
    shot("keyboard-refund-dialog")
    page.keyboard.press("Escape")
    page.locator("dialog.pe-dialog").wait_for(state="detached")
    assert (
        local_stack.rows(
            "select 1 from refunds where payment_intent_id = %s", session["payment_intent"]
        )
        == []
    )


def test_the_admin_pages_through_a_members_payments_with_load_more(
    page: Any, local_stack: LocalStack, shot: Callable[[str], Path]
) -> None:
    # Given a member with 23 payments (written straight into the database: only the paging
    # is under test here)
    member_id = new_member()
    with psycopg.connect(local_stack.database_url, autocommit=True) as conn:
        for n in range(23):
            conn.execute(
                "insert into purchases (checkout_session_id, payment_intent_id, member_id,"
                " product, amount, currency, status, created_at)"
                " values (%s, %s, %s, 'website_audit_feedback', 7900, 'usd', 'paid',"
                " now() - make_interval(mins => %s))",
                (f"cs_page_{member_id}_{n}", f"pi_page{n:02d}{member_id[-8:]}", member_id, n),
            )
    _open_console(page, local_stack, local_stack.admin_id)
    page.wait_for_selector(f'{ADMIN}[data-admin-state="ready"]')

    # When the admin searches for them: one page of 20, newest first, and Load more
    page.fill(_pe("find-member"), member_id)
    page.click(_pe("find-submit"))
    rows = f"{_pe('find-table')} tbody tr"
    # The console opens on the recent payments of everyone: wait for the member's own.
    mine = (
        "([s, id]) => { const trs = [...document.querySelectorAll(s)];"
        " return trs.length === 20 && trs.every((tr) => tr.dataset.paymentIntent.endsWith(id)); }"
    )
    page.wait_for_function(mine, arg=[rows, member_id[-8:]])
    assert page.is_visible(_pe("find-more"))
    page.click(_pe("find-more"))

    # Then the last three follow, each payment once, and there is nothing more to load
    page.wait_for_function("(s) => document.querySelectorAll(s).length === 23", arg=rows)
    intents = page.eval_on_selector_all(rows, "(trs) => trs.map((tr) => tr.dataset.paymentIntent)")
    assert intents == [f"pi_page{n:02d}{member_id[-8:]}" for n in range(23)]
    assert page.is_hidden(_pe("find-more"))
    assert page.inner_text(f"{_pe('find-table')} caption") == "23 payments, newest first"
    shot("paged")


def test_the_pipeline_status_shows_dead_letters_dispatches_and_the_last_reconcile(
    page: Any, local_stack: LocalStack, shot: Callable[[str], Path]
) -> None:
    # Given a reconcile run that found nothing to heal
    from tools.reconcile import main as reconcile

    assert reconcile(["--now"]) == 0

    # When an admin opens the console
    _open_console(page, local_stack, local_stack.admin_id)
    page.wait_for_selector(f'{ADMIN}[data-admin-state="ready"]')
    page.locator(_pe("pipeline-dead-letters")).wait_for()

    # Then the pipeline shows an empty dead-letter queue, nothing waiting, and that run
    assert page.inner_text(_pe("pipeline-dead-letters")) == "0"
    assert page.inner_text(_pe("pipeline-pending")) == "0"
    assert "healed everything (0 events, 0 dispatches" in page.inner_text(_pe("pipeline-reconcile"))
    shot("pipeline")
