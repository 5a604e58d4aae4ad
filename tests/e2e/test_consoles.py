"""The reference consoles in a real browser: a customer books again, mechanics answer, the prompt follows."""

from __future__ import annotations

from typing import Any

import pytest

# Without Playwright (a machine with no Chromium) the module is reported as skipped instead of failing collection;
# conftest turns that into an error where REQUIRE_BROWSER_TESTS=1.
pytest.importorskip("playwright.async_api", reason="browser tests skipped: Playwright is not installed")

from playwright.async_api import Browser, Page, expect

from api.auth import Role
from tests.e2e.conftest import screenshot
from tests.helpers import Harness

PHONE = {"width": 390, "height": 844}


async def _open(browser: Browser, harness: Harness, console: str, token: str, phone: bool = False) -> Page:
    context = await browser.new_context(viewport=PHONE if phone else {"width": 1100, "height": 800})
    page = await context.new_page()
    await page.goto(f"{harness.base_url}/console/{console}/")
    await page.get_by_label("token").fill(token)
    await page.get_by_role("button", name="Sign in" if console != "mechanic" else "Connect").click()
    return page


async def _customer(browser: Browser, harness: Harness, **kwargs: Any) -> Page:
    return await _open(
        browser, harness, "customer", harness.token(Role.CUSTOMER, harness.customer_id, "Jordan"), **kwargs
    )


async def _mechanic(browser: Browser, harness: Harness, mechanic_id: str) -> Page:
    page = await _open(browser, harness, "mechanic", harness.token(Role.MECHANIC, mechanic_id))
    await expect(page.get_by_role("status")).to_have_text("● Online")
    return page


async def _favorite(harness: Harness, mechanic_id: str) -> None:
    await harness.http.post("/api/customer/favorites", json={"provider_id": mechanic_id}, headers=harness.customer)


async def test_book_again_an_online_favorite_who_accepts(browser: Browser, harness: Harness) -> None:
    """Book Again with an online favorite: the modal says Available Now, the mechanic console accepts."""
    sam = await harness.create_mechanic("Sam")
    await _favorite(harness, sam)
    mechanic = await _mechanic(browser, harness, sam)
    customer = await _customer(browser, harness, phone=True)
    await customer.get_by_role("button", name="Book Again with Sam").click()
    dialog = customer.get_by_role("dialog")
    await expect(dialog).to_contain_text("● Available Now")
    await expect(dialog).to_contain_text("Priority Booking: your favorite mechanic gets notified first")
    await screenshot(customer, "customer-availability-online")
    await dialog.get_by_role("button", name="Continue with Sam").click()
    await expect(customer.locator(".request-message")).to_have_text("Waiting for Sam…")
    await expect(mechanic.locator("#offers")).to_contain_text("★ Priority request from your favorite customer")
    await screenshot(mechanic, "mechanic-priority-offer")
    await mechanic.get_by_role("button", name="Accept").click()
    await expect(customer.locator(".request-message")).to_have_text("Sam accepted your request.")
    await screenshot(customer, "customer-accepted")


async def test_notify_and_wait_falls_back_to_another_mechanic(browser: Browser, harness: Harness) -> None:
    """An offline favorite with notify & wait: after the short window a second mechanic gets it and accepts."""
    sam = await harness.create_mechanic("Sam")
    alex = await harness.create_mechanic("Alex")
    await _favorite(harness, sam)
    other = await _mechanic(browser, harness, alex)
    customer = await _customer(browser, harness)
    await expect(customer.locator("#favorites-list")).to_contain_text("○ Currently Offline")
    await customer.get_by_role("button", name="Book Again with Sam").click()
    await screenshot(customer, "customer-availability-offline")
    await customer.get_by_role("dialog").get_by_role("button", name="Notify & Wait for Sam").click()
    await expect(customer.locator(".request-message")).to_contain_text("Sam is offline")
    await expect(other.locator("#offers")).to_contain_text("Open to every available mechanic", timeout=10_000)
    await expect(customer.locator(".request-message")).to_contain_text("Sam wasn't online")
    await screenshot(customer, "customer-fallback")
    await other.get_by_role("button", name="Accept").click()
    await expect(customer.locator(".request-message")).to_have_text("Alex accepted your request.")


async def test_a_decline_goes_to_everyone_else(browser: Browser, harness: Harness) -> None:
    """The favorite declines from the console: the other mechanic gets it at once."""
    sam = await harness.create_mechanic("Sam")
    alex = await harness.create_mechanic("Alex")
    await _favorite(harness, sam)
    favorite = await _mechanic(browser, harness, sam)
    other = await _mechanic(browser, harness, alex)
    customer = await _customer(browser, harness)
    await customer.get_by_role("button", name="Book Again with Sam").click()
    await customer.get_by_role("dialog").get_by_role("button", name="Continue with Sam").click()
    await favorite.get_by_role("button", name="Decline").click()
    await expect(other.locator("#offers")).to_contain_text("Jordan")
    await expect(customer.locator(".request-message")).to_contain_text("Sam isn't available right now")
    await other.get_by_role("button", name="Accept").click()
    await expect(customer.locator(".request-message")).to_have_text("Alex accepted your request.")


async def test_favorite_prompt_after_completion(browser: Browser, harness: Harness) -> None:
    """After the mechanic completes the session, the customer is prompted and can add them to favorites."""
    sam = await harness.create_mechanic("Sam")
    mechanic = await _mechanic(browser, harness, sam)
    customer = await _customer(browser, harness)
    await expect(customer.locator("#favorites-empty")).to_be_visible()
    await screenshot(customer, "customer-empty-favorites")
    await customer.get_by_role("button", name="Find Available Mechanic Now").click()
    await mechanic.get_by_role("button", name="Accept").click()
    await mechanic.get_by_role("button", name="Complete session").click()
    await expect(mechanic.locator("#sessions")).to_be_empty()
    # The customer's page polls every second: allow a few polls on a busy machine.
    await expect(customer.get_by_role("heading", name="Great Session with Sam!")).to_be_visible(timeout=10_000)
    await screenshot(customer, "customer-favorite-prompt")
    await customer.get_by_role("button", name="Add to Favorites").click()
    await expect(customer.locator(".prompt")).to_be_hidden()
    await expect(customer.locator("#favorites-list")).to_contain_text("Sam")


async def test_deleted_favorite_says_so(browser: Browser, harness: Harness) -> None:
    """A favorite deleted from the platform: the live console drops the card and says why; a console polling
    instead (its stream refused) still shows it until the next poll, and its modal says they are gone."""
    sam, lee = await harness.create_mechanic("Sam"), await harness.create_mechanic("Lee")
    await _favorite(harness, sam)
    await _favorite(harness, lee)
    live = await _customer(browser, harness)
    await expect(live.get_by_role("button", name="Book Again with Lee")).to_be_visible()
    await harness.http.delete(f"/api/admin/mechanics/{lee}", headers=harness.admin)
    await expect(live.locator("#toast")).to_have_text("Lee is no longer available and left your favorites.")
    await expect(live.get_by_role("button", name="Book Again with Lee")).to_have_count(0)

    context = await browser.new_context(viewport={"width": 1100, "height": 800})
    await context.route("**/api/customer/favorites/stream*", lambda route: route.fulfill(status=503))
    customer = await context.new_page()
    await customer.goto(f"{harness.base_url}/console/customer/")
    await customer.get_by_label("token").fill(harness.token(Role.CUSTOMER, harness.customer_id, "Jordan"))
    await customer.get_by_role("button", name="Sign in").click()
    await expect(customer.get_by_role("button", name="Book Again with Sam")).to_be_visible()
    await harness.http.delete(f"/api/admin/mechanics/{sam}", headers=harness.admin)
    await customer.get_by_role("button", name="Book Again with Sam").click()
    dialog = customer.get_by_role("dialog")
    await expect(dialog).to_contain_text("This mechanic is no longer available. Find another mechanic?")
    await screenshot(customer, "customer-deleted-favorite")


async def test_operations_page(browser: Browser, harness: Harness) -> None:
    """The operations page shows who is online, open requests, the KPIs, presence accuracy and the charts."""
    sam = await harness.create_mechanic("Sam")
    await harness.connect(sam)
    await harness.book(routing="broadcast")
    page = await _open(browser, harness, "ops", harness.admin_token)
    await expect(page.locator("#online")).to_contain_text("Sam")
    await expect(page.locator("#open")).to_contain_text("broadcast")
    await expect(page.locator("#kpis")).to_contain_text("Favorite acceptance rate")
    await expect(page.locator("#chart-time svg")).to_be_visible()
    presence = page.locator("#presence")
    await expect(presence).to_contain_text("Ghosts: shown online, not heard within the TTL")
    ttl = harness.settings.presence_ttl_s
    await expect(presence).to_contain_text(f"{ttl}–")  # the expected offline lag, from the settings
    whatif = page.locator("#whatif")
    await expect(whatif.locator("tr")).to_have_count(5)  # the current window and four around it
    await expect(whatif.locator("tr.current")).to_contain_text("(now)")
    await screenshot(page, "ops")


async def test_favorites_follow_the_stream_and_fall_back_to_polling(browser: Browser, harness: Harness) -> None:
    """The customer's cards change as the mechanic comes and goes, with no reload and without polling the list;
    where the stream is refused (a proxy in the way), the cards are polled instead, with the live status."""
    sam = await harness.create_mechanic("Sam")
    await _favorite(harness, sam)
    customer = await _customer(browser, harness)
    polls: list[str] = []
    customer.on("request", lambda r: polls.append(r.url) if r.url.endswith("/api/customer/favorites") else None)
    cards = customer.locator("#favorites-list")
    await expect(cards).to_contain_text("○ Currently Offline")
    sam_app = await harness.connect(sam)
    await expect(cards).to_contain_text("● Available Now")
    await sam_app.close()
    await expect(cards).to_contain_text("○ Currently Offline · Last seen just now")
    assert polls == [], "streaming, the console does not poll the list"

    refused = await _open(browser, harness, "customer", harness.token(Role.CUSTOMER, harness.customer_id), phone=True)
    await refused.context.route("**/api/customer/favorites/stream*", lambda route: route.fulfill(status=503))
    await harness.connect(sam)
    await refused.reload()
    await expect(refused.locator("#favorites-list")).to_contain_text("● Available Now", timeout=10_000)
