"""The consoles between the happy steps: reloads, a wrong token, a double booking, removing a favorite, a deleted
account, and support reading a request's timeline; at desktop and phone width."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("playwright.async_api", reason="browser tests skipped: Playwright is not installed")

from playwright.async_api import Browser, Page, expect

from api.auth import Role
from tests.e2e.test_consoles import _customer, _favorite, _mechanic, _open
from tests.helpers import Harness

WIDTHS = [pytest.param(False, id="desktop"), pytest.param(True, id="phone")]


async def _no_sideways_scroll(page: Page) -> None:
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.parametrize("phone", WIDTHS)
async def test_a_reload_finds_the_request_again_and_book_again_waits_for_it(
    browser: Browser, harness: Harness, phone: bool
) -> None:
    sam = await harness.create_mechanic("Sam")
    await _favorite(harness, sam)
    await _mechanic(browser, harness, sam)
    customer = await _customer(browser, harness, phone=phone)
    await customer.get_by_role("button", name="Book Again with Sam").click()
    await customer.get_by_role("dialog").get_by_role("button", name="Continue with Sam").click()
    await expect(customer.locator(".request-message")).to_have_text("Waiting for Sam…")
    await customer.reload()
    await expect(customer.locator(".request-message")).to_have_text("Waiting for Sam…")
    card = customer.locator("#favorites-list li", has_text="Sam")
    await expect(card.get_by_role("button", name="Book Again")).to_be_disabled()
    await expect(card).to_contain_text("You have an open request with them")
    await _no_sideways_scroll(customer)
    listed = await harness.http.get("/api/customer/session-requests", headers=harness.customer)
    assert len(listed.json()["requests"]) == 1


@pytest.mark.parametrize("phone", WIDTHS)
async def test_a_wrong_token_shows_the_sign_in_form_with_the_reason_and_stops_polling(
    browser: Browser, harness: Harness, phone: bool
) -> None:
    context = await browser.new_context(viewport={"width": 390, "height": 844} if phone else None)
    page = await context.new_page()
    uncaught: list[str] = []
    page.on("pageerror", lambda error: uncaught.append(str(error)))
    await page.goto(f"{harness.base_url}/console/customer/")
    await page.get_by_label("token").fill("not-a-token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#signin-reason")).to_contain_text("Please sign in again")
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    calls: list[str] = []
    page.on("request", lambda request: calls.append(request.url) if "/api/" in request.url else None)
    await asyncio.sleep(6)  # longer than the favorites poll (5 s)
    assert calls == [] and uncaught == []


async def test_sign_out_and_remove_a_favorite_with_a_confirmation(browser: Browser, harness: Harness) -> None:
    sam = await harness.create_mechanic("Sam")
    await _favorite(harness, sam)
    customer = await _customer(browser, harness)
    customer.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await customer.get_by_role("button", name="Remove Sam from favorites").click()
    await expect(customer.locator("#toast")).to_have_text("Sam was removed from your favorites.")
    await expect(customer.locator("#favorites-empty")).to_be_visible()
    await customer.get_by_role("button", name="Sign out").click()
    await expect(customer.locator("#signin")).to_be_visible()
    await expect(customer.locator("#favorites")).to_be_hidden()


async def test_adding_a_favorite_says_so_and_survives_a_reload(browser: Browser, harness: Harness) -> None:
    """The "Add to Favorites" prompt is still there after a reload, and adding shows a confirmation."""
    sam = await harness.create_mechanic("Sam")
    mechanic = await _mechanic(browser, harness, sam)
    customer = await _customer(browser, harness)
    await customer.get_by_role("button", name="Find Available Mechanic Now").click()
    await mechanic.get_by_role("button", name="Accept").click()
    await mechanic.get_by_role("button", name="Complete session").click()
    await expect(mechanic.locator("#sessions")).to_be_empty()
    await expect(customer.get_by_role("heading", name="Great Session with Sam!")).to_be_visible(timeout=10_000)
    await customer.reload()
    await expect(customer.get_by_role("heading", name="Great Session with Sam!")).to_be_visible()
    await customer.get_by_role("button", name="Add to Favorites").click()
    await expect(customer.locator("#toast")).to_have_text("Sam was added to your favorites.")


@pytest.mark.parametrize("phone", WIDTHS)
async def test_a_reloaded_mechanic_console_keeps_its_session(browser: Browser, harness: Harness, phone: bool) -> None:
    sam = await harness.create_mechanic("Sam")
    page = await _open(browser, harness, "mechanic", harness.token(Role.MECHANIC, sam), phone=phone)
    await expect(page.get_by_role("status")).to_have_text("● Online")
    booked = await harness.book(routing="broadcast")
    await page.get_by_role("button", name="Accept").click()
    await expect(page.locator("#sessions")).to_contain_text("Jordan")
    await page.reload()
    await expect(page.get_by_role("status")).to_have_text("● Online")
    await expect(page.locator("#sessions")).to_contain_text("Jordan")
    await page.get_by_role("button", name="Complete session").click()
    await expect(page.locator("#sessions")).to_be_empty()
    assert (await harness.request(booked["id"]))["status"] == "completed"
    await _no_sideways_scroll(page)


async def test_a_deleted_mechanic_account_clears_the_console(browser: Browser, harness: Harness) -> None:
    sam = await harness.create_mechanic("Sam")
    page = await _mechanic(browser, harness, sam)
    await harness.book(routing="broadcast")
    await expect(page.locator("#offers")).to_contain_text("Jordan")
    await harness.http.delete(f"/api/admin/mechanics/{sam}", headers=harness.admin)
    await expect(page.locator("#errors")).to_contain_text("This mechanic account no longer exists.")
    await expect(page.locator("#offers")).to_be_empty()
    await expect(page.locator("#offers-empty")).to_be_visible()


async def test_a_priority_offer_counts_down_only_for_you(browser: Browser, harness: Harness) -> None:
    sam = await harness.create_mechanic("Sam")
    page = await _mechanic(browser, harness, sam)
    await harness.book(routing="priority", preferred_mechanic_id=sam)
    await expect(page.locator(".countdown")).to_contain_text("Only you for 0:")
    await expect(page.locator(".countdown")).to_contain_text("(until ")


@pytest.mark.parametrize("phone", WIDTHS)
async def test_support_reads_why_a_favorite_did_not_take_a_request(
    browser: Browser, harness: Harness, phone: bool
) -> None:
    sam = await harness.create_mechanic("Sam")
    sam_app = await harness.connect(sam)
    booked = await harness.book(routing="priority", preferred_mechanic_id=sam)
    await sam_app.expect("offer", request_id=booked["id"])
    await sam_app.send({"type": "decline", "request_id": booked["id"]})
    await sam_app.expect("declined", request_id=booked["id"])
    page = await _open(browser, harness, "ops", harness.admin_token, phone=phone)
    await page.get_by_role("button", name=f"Timeline of request {booked['id']}").click()
    timeline = page.locator("#timeline")
    await expect(timeline).to_contain_text("Booked")
    await expect(timeline).to_contain_text("Offered to the favorite · Sam")
    await expect(timeline).to_contain_text("Declined · Sam")
    await expect(timeline).to_contain_text("Fell back to every mechanic: the favorite declined")
    await expect(page.locator("#kpis")).to_contain_text("Time to session start")
    await _no_sideways_scroll(page)
