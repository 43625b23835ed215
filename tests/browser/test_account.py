"""The member's account in a real browser: the demo's account page carries the Webflow embed's
``data-payments-account`` block, against the whole local stack (Stripe emulator, Memberstack
stand-in, queue and worker, real Postgres)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.browser.support import (
    BROWSER,
    LocalStack,
    assert_every_control_is_labelled,
    assert_focus_is_visible,
    eventually,
    new_member,
    pay_on_stripe,
    sign_in,
    tab_to,
)

pytestmark = BROWSER

ACCOUNT = "[data-payments-account]"


def _open_account(page: Any, stack: LocalStack) -> None:
    page.goto(f"{stack.api}/account.html")
    page.wait_for_selector(f'{ACCOUNT}[data-account-state="ready"]')


def _pe(key: str) -> str:
    return f'{ACCOUNT} [data-pe="{key}"]'


def _plan_status(stack: LocalStack, member_id: str) -> str | None:
    rows = stack.rows(
        "select status, cancel_at_period_end, product from subscriptions where member_id = %s",
        member_id,
    )
    return f"{rows[0][0]}:{rows[0][1]}:{rows[0][2]}" if rows else None


def _dialog_choose(page: Any, key: str) -> None:
    dialog = page.locator("dialog.pe-dialog[open]")
    dialog.wait_for()
    dialog.locator(f'[data-pe="dialog-{key}"]').click()
    dialog.wait_for(state="detached")


def test_a_member_buys_subscribes_changes_pauses_resumes_cancels_exports_and_erases(
    page: Any, local_stack: LocalStack, shot: Callable[[str], Path]
) -> None:
    member_id = new_member()

    # Given a member who bought the Business Plan Builder
    sign_in(page, local_stack, member_id)
    page.click('[data-buy="business_plan_builder"]')
    pay_on_stripe(page)

    # When they subscribe to the Growth plan
    page.goto(f"{local_stack.api}/")
    page.locator('[data-buy="business_plan_builder"][data-owned="Purchased"]').wait_for()
    page.click('[data-subscribe="growth_monthly"]')
    pay_on_stripe(page)
    eventually(lambda: _plan_status(local_stack, member_id) == "active:False:growth_monthly")

    # Then the product page says what they hold
    page.goto(f"{local_stack.api}/")
    page.locator('[data-subscribe="growth_monthly"][data-owned="Current plan"]').wait_for()
    assert page.is_disabled('[data-subscribe="growth_monthly"]')
    assert page.inner_text('[data-subscribe="scale_monthly"]') == "Subscribe"
    shot("products-owned")

    # And the account shows the purchase and the plan with its next payment
    _open_account(page, local_stack)
    purchases = page.locator(_pe("purchases-list")).locator("li").all_inner_texts()
    assert len(purchases) == 1
    assert purchases[0].startswith("Business Plan Builder · $99 · ")
    assert purchases[0].endswith(" · Paid")
    assert page.inner_text(_pe("plan-name")) == "Growth Plan (monthly)"
    assert page.inner_text(_pe("plan-status")) == "Active"
    assert page.inner_text(_pe("plan-amount")) == "$29/month"
    assert page.inner_text(_pe("plan-next")).startswith("$29 on ")
    assert assert_every_control_is_labelled(page, ACCOUNT) >= 6
    shot("account")

    # When they try to erase their data while the plan is live, they are told why it waits
    page.click(_pe("data-erase"))
    shot("erase-confirmation")
    _dialog_choose(page, "erase")
    refusal = page.locator(_pe("data-message"))
    refusal.filter(has_text="We cannot erase your data yet.").wait_for()
    assert "subscription" in refusal.inner_text().lower()
    assert refusal.get_attribute("data-tone") == "error"

    # When they preview moving to the Scale plan, the dialog shows Stripe's amounts
    page.select_option(_pe("plan-choice"), "scale_monthly")
    page.click(_pe("plan-preview"))
    dialog = page.locator("dialog.pe-dialog[open]")
    dialog.wait_for()
    due_now = dialog.locator('[data-pe="preview-due-now"]').inner_text()
    assert re.fullmatch(r"\$[\d,]+(\.\d\d)?", due_now)
    assert dialog.locator('[data-pe="preview-next"]').inner_text().startswith("$")
    assert dialog.locator('[data-pe="preview-lines"] li').count() >= 1
    # The message of the previous action is gone
    assert page.inner_text(_pe("data-message")) == ""
    shot("change-preview")
    _dialog_choose(page, "change")

    # Then the plan is Scale, in the account and in Stripe
    page.locator(_pe("plan-message")).filter(has_text="Your plan is now Scale Plan").wait_for()
    assert page.inner_text(_pe("plan-name")) == "Scale Plan (monthly)"
    [(subscription_id,)] = local_stack.rows(
        "select id from subscriptions where member_id = %s", member_id
    )
    stripe_sub = local_stack.stripe("GET", f"/v1/subscriptions/{subscription_id}")
    assert stripe_sub["items"]["data"][0]["price"]["lookup_key"] == "scale_monthly_usd_v1"
    shot("changed")

    # When they pause, then resume
    page.click(_pe("plan-pause"))
    page.locator(_pe("plan-status")).filter(has_text="Paused").wait_for()
    assert "nothing is charged until you resume" in page.inner_text(_pe("plan-message"))
    assert stripe_pause(local_stack, subscription_id) is not None
    shot("paused")
    page.click(_pe("plan-resume"))
    page.locator(_pe("plan-status")).filter(has_text="Active").wait_for()
    assert page.inner_text(_pe("plan-message")).startswith("Your plan is running again.")
    assert stripe_pause(local_stack, subscription_id) is None

    # When they cancel at the end of the period, then change their mind
    page.click(_pe("plan-cancel"))
    shot("cancel-choices")
    _dialog_choose(page, "end")
    page.locator(_pe("plan-status")).filter(has_text="it will not renew").wait_for()
    assert local_stack.stripe("GET", f"/v1/subscriptions/{subscription_id}")["cancel_at_period_end"]
    shot("cancel-scheduled")
    page.click(_pe("plan-resume"))
    page.locator(_pe("plan-status")).filter(has_text="Active").wait_for()

    # When they open the Billing Portal, Stripe's page lists their invoices and leads back
    page.click(_pe("portal-open"))
    page.wait_for_url(re.compile(r"/billing_portal/sessions/bps_"))
    assert "$29.00" in page.inner_text("#portal-invoices")
    shot("billing-portal")
    page.click("#return-to-merchant")
    page.wait_for_url(re.compile(r"/account\.html$"))
    page.wait_for_selector(f'{ACCOUNT}[data-account-state="ready"]')

    # When they cancel now
    page.click(_pe("plan-cancel"))
    _dialog_choose(page, "now")
    page.locator(_pe("plan-none")).wait_for()
    assert "ended today" in page.inner_text(_pe("plan-message"))
    assert local_stack.stripe("GET", f"/v1/subscriptions/{subscription_id}")["status"] == (
        "canceled"
    )
    shot("canceled")

    # When they export their data, the browser downloads it as JSON
    with page.expect_download() as download:
        page.click(_pe("data-export"))
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported["member_id"] == member_id
    assert sorted(p["product"] for p in exported["purchases"] if p["status"] == "paid") == [
        "business_plan_builder",
        "growth_monthly",
    ]
    # The first payment on growth, then the upgrade invoiced at once on scale
    assert [i["product"] for i in exported["subscription_invoices"]] == [
        "growth_monthly",
        "scale_monthly",
    ]
    assert download.value.suggested_filename.startswith("my-data-")
    assert "downloaded" in page.inner_text(_pe("data-message"))

    # When, the plan having ended, they erase their data
    eventually(lambda: (_plan_status(local_stack, member_id) or "").startswith("canceled"))
    page.click(_pe("data-erase"))
    _dialog_choose(page, "erase")

    # Then it is erased, and the account holds nothing of them any more
    page.locator(_pe("data-message")).filter(has_text="Your data was erased.").wait_for()
    assert page.inner_text(_pe("purchases-body")) == "No purchases yet."
    assert local_stack.rows("select 1 from customers where member_id = %s", member_id) == []
    shot("erased")


def stripe_pause(stack: LocalStack, subscription_id: str) -> Any:
    return stack.stripe("GET", f"/v1/subscriptions/{subscription_id}")["pause_collection"]


def test_a_new_member_uses_the_account_with_the_keyboard_alone(
    page: Any, local_stack: LocalStack, shot: Callable[[str], Path]
) -> None:
    # Given a member who has bought nothing, on the account page
    sign_in(page, local_stack, new_member(), path="/account.html")
    page.wait_for_selector(f'{ACCOUNT}[data-account-state="ready"]')
    assert page.inner_text(_pe("purchases-body")) == "No purchases yet."
    assert page.inner_text(_pe("plan-body")) == "You have no monthly plan."

    # When they reach "Payment method and invoices" with Tab and press Enter
    tab_to(page, _pe("portal-open"))
    assert_focus_is_visible(page)
    data_heading = page.locator(_pe("data")).bounding_box()
    page.keyboard.press("Enter")

    # Then they are told, in plain words, that there is nothing to show yet
    message = page.locator(_pe("portal-message"))
    message.filter(has_text="first payment").wait_for()
    # And the message took its reserved line: nothing below it moved
    assert page.locator(_pe("data")).bounding_box() == data_heading
    shot("portal-without-customer")

    # When they tab on to "Export my data" and press Enter
    tab_to(page, _pe("data-export"))
    assert_focus_is_visible(page)
    with page.expect_download():
        page.keyboard.press("Enter")

    # Then the earlier message is gone and the export is confirmed
    page.locator(_pe("data-message")).filter(has_text="downloaded").wait_for()
    assert message.inner_text() == ""

    # When they open "Erase my data…", the dialog starts on the safe choice; Escape keeps it all
    tab_to(page, _pe("data-erase"))
    page.keyboard.press("Enter")
    dialog = page.locator("dialog.pe-dialog[open]")
    dialog.wait_for()
    assert page.evaluate("() => document.activeElement.dataset.pe") == "dialog-cancel"
    assert_focus_is_visible(page)
    assert_every_control_is_labelled(page, "dialog.pe-dialog[open]")
    shot("erase-dialog-keyboard")
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")
    # And the focus is back on the button that opened it
    assert page.evaluate("() => document.activeElement.dataset.pe") == "data-erase"


def test_a_busy_button_shows_it_and_keeps_its_size(
    page: Any, local_stack: LocalStack, shot: Callable[[str], Path]
) -> None:
    # Given a member with a Stripe customer, and Stripe slow to open the portal
    member_id = new_member()
    local_stack.buy(member_id, "social_media_email_campaign")
    sign_in(page, local_stack, member_id, path="/account.html")
    page.wait_for_selector(f'{ACCOUNT}[data-account-state="ready"]')
    httpx.post(
        f"{local_stack.emulator}/_emulator/faults",
        json={"method": "POST", "path": "/v1/billing_portal/sessions", "status": 0,
              "times": 1, "hang_seconds": 1.5},
    ).raise_for_status()  # fmt: skip
    button = page.locator(_pe("portal-open"))
    before = button.bounding_box()

    # When they click "Payment method and invoices"
    button.click()

    # Then the button is busy, disabled and the same size until the page leaves for Stripe
    page.locator(f'{_pe("portal-open")}[aria-busy="true"]').wait_for()
    assert button.is_disabled()
    assert button.bounding_box() == before
    shot("busy")
    page.wait_for_url(re.compile(r"/billing_portal/sessions/bps_"))


def test_a_tampered_quote_is_refused_and_the_member_is_asked_to_preview_again(
    page: Any, local_stack: LocalStack, shot: Callable[[str], Path]
) -> None:
    # Given a Growth subscriber who previews a move to Scale
    member_id = new_member()
    sign_in(page, local_stack, member_id)
    page.click('[data-subscribe="growth_monthly"]')
    pay_on_stripe(page)
    eventually(lambda: _plan_status(local_stack, member_id) == "active:False:growth_monthly")
    _open_account(page, local_stack)
    page.select_option(_pe("plan-choice"), "scale_monthly")
    page.click(_pe("plan-preview"))
    page.locator("dialog.pe-dialog[open]").wait_for()

    # And a quote altered on its way to the service
    def tamper(route: Any) -> None:
        body = json.loads(route.request.post_data)
        assert body["quote"]  # the preview's quote is what the change sends
        route.continue_(post_data=json.dumps({**body, "quote": body["quote"][:-2] + "xx"}))

    page.route(re.compile(r"/v1/subscriptions/sub_\w+/change$"), tamper)

    # When they confirm
    _dialog_choose(page, "change")

    # Then nothing changes and they are asked, in the service's words, to preview again
    message = page.locator(_pe("plan-message"))
    message.filter(has_text="preview").wait_for()
    assert message.get_attribute("data-tone") == "error"
    assert page.inner_text(_pe("plan-name")) == "Growth Plan (monthly)"
    shot("quote-refused")
