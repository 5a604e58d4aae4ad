"""The consoles' last mile, as a customer, mechanics and an operator meet it, at desktop and phone width: several
open requests at once, a wrong role's token, workshops in the prompt, sign-out, a lapsed priority window, plain
notification errors, and the operations page's tables, charts, durations, errors, search and member picking."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

pytest.importorskip("playwright.async_api", reason="browser tests skipped: Playwright is not installed")

from playwright.async_api import Browser, Dialog, Page, expect

from api.auth import Role
from api.settings import Settings
from tests.e2e.conftest import screenshot
from tests.e2e.test_consoles import PHONE, _customer, _favorite, _mechanic, _open
from tests.helpers import Harness, start_server

WIDTHS = [pytest.param(False, id="desktop"), pytest.param(True, id="phone")]


def _accept_dialogs(page: Page) -> list[str]:
    """Accept every confirm() and keep what it asked."""
    asked: list[str] = []

    async def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.on("dialog", answer)
    return asked


async def _complete(harness: Harness, mechanic_id: str, request_id: str) -> None:
    mechanic = harness.auth(harness.token(Role.MECHANIC, mechanic_id))
    response = await harness.http.post(f"/api/session-requests/{request_id}/complete", headers=mechanic)
    assert response.status_code == 200, response.text


@pytest.fixture
async def long_window(settings: Settings, redis: object) -> AsyncIterator[Harness]:
    """Sam's priority window outlasts the test: its steps on a loaded machine take longer than the usual 2 s."""
    async with start_server(replace(settings, priority_window_s=60.0)) as harness:
        yield harness


@pytest.mark.parametrize("phone", WIDTHS)
async def test_every_open_request_has_its_card_and_another_is_asked_first(
    browser: Browser, long_window: Harness, phone: bool
) -> None:
    harness = long_window
    sam, alex = await harness.create_mechanic("Sam"), await harness.create_mechanic("Alex")
    await _favorite(harness, sam)
    sam_console = await _mechanic(browser, harness, sam)
    customer = await _customer(browser, harness, phone=phone)
    asked = _accept_dialogs(customer)
    await customer.get_by_role("button", name="Book Again with Sam").click()
    await customer.get_by_role("dialog").get_by_role("button", name="Continue with Sam").click()
    await expect(customer.locator(".request-message")).to_have_text("Waiting for Sam…")
    await customer.get_by_role("button", name="Find Available Mechanic Now").click()
    await expect(customer.locator("#requests > li")).to_have_count(2)
    assert asked == ["You already have an open request. Start another one as well?"]
    alex_app = await harness.connect(alex)
    open_requests = await harness.http.get("/api/customer/session-requests?status=open", headers=harness.customer)
    broadcast = next(r["id"] for r in open_requests.json()["requests"] if r["routing"] == "broadcast")
    await alex_app.expect("offer", request_id=broadcast)
    await alex_app.send({"type": "accept", "request_id": broadcast})
    await alex_app.expect("accepted", request_id=broadcast)
    await _complete(harness, alex, broadcast)
    card = customer.locator("#requests > li", has_text="Alex")
    await expect(card.get_by_role("heading", name="Great Session with Alex!")).to_be_visible(timeout=10_000)
    await expect(customer.locator("#requests > li", has_text="Waiting for Sam…")).to_be_visible()
    await screenshot(customer, f"customer-two-requests{'-phone' if phone else ''}")
    await sam_console.get_by_role("button", name="Accept").click()
    await expect(customer.locator("#requests > li", has_text="Sam accepted your request.")).to_be_visible()
    await customer.reload()
    await expect(customer.locator("#requests > li")).to_have_count(2)  # the open one and the one still asking


async def test_a_token_of_another_role_goes_back_to_sign_in(browser: Browser, harness: Harness) -> None:
    sam = await harness.create_mechanic("Sam")
    customer = await _open(browser, harness, "customer", harness.token(Role.MECHANIC, sam))
    await expect(customer.locator("#signin-reason")).to_have_text(
        "This token is not a customer's: sign in with the customer token that make run printed."
    )
    await expect(customer.locator("#favorites")).to_be_hidden()
    assert await customer.evaluate("sessionStorage.length") == 0


async def test_after_a_workshop_members_session_the_prompt_offers_both(browser: Browser, harness: Harness) -> None:
    sam, alex = await harness.create_mechanic("Sam"), await harness.create_mechanic("Alex")
    created = await harness.http.post("/api/admin/workshops", json={"name": "Patel Motors"}, headers=harness.admin)
    patel = created.json()["id"]
    for member in (sam, alex):
        await harness.http.put(f"/api/admin/workshops/{patel}/members/{member}", headers=harness.admin)
    sam_app = await harness.connect(sam)
    await harness.connect(alex)
    customer = await _customer(browser, harness, phone=True)
    await customer.get_by_role("button", name="Find Available Mechanic Now").click()
    offer = await sam_app.expect("offer")
    await sam_app.send({"type": "accept", "request_id": offer["request_id"]})
    await sam_app.expect("accepted", request_id=offer["request_id"])
    await _complete(harness, sam, offer["request_id"])
    await expect(customer.get_by_role("heading", name="Great Session with Sam!")).to_be_visible(timeout=10_000)
    await screenshot(customer, "customer-prompt-workshop")
    await customer.get_by_role("button", name="Add Patel Motors").click()
    await expect(customer.locator("#toast")).to_have_text("Patel Motors was added to your favorites.")
    await expect(customer.get_by_role("button", name="Add Patel Motors")).to_be_hidden()
    await customer.get_by_role("button", name="Add to Favorites").click()  # Sam alone is left
    await expect(customer.locator("#toast")).to_have_text("Sam was added to your favorites.")
    favorites = customer.locator("#favorites-list")
    await expect(favorites.locator("li", has_text="Patel Motors")).to_contain_text("2 mechanics available now: ")
    await expect(favorites.locator("li", has_text="Patel Motors")).to_contain_text("not booked yet")
    sam_card = favorites.locator("li", has=customer.locator("strong", has_text=re.compile("^Sam$")))
    await expect(sam_card).to_contain_text("booked 1×")  # the session just given, before Sam was a favorite


async def test_a_mechanic_signs_out_and_goes_offline(browser: Browser, harness: Harness) -> None:
    sam = await harness.create_mechanic("Sam")
    page = await _mechanic(browser, harness, sam)
    assert (await harness.status(sam))["is_online"] is True
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_have_text("○ Signed out")
    await expect(page.get_by_role("button", name="Connect")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0
    for _ in range(50):
        if not (await harness.status(sam))["is_online"]:
            break
        await asyncio.sleep(0.1)
    assert (await harness.status(sam))["is_online"] is False
    await asyncio.sleep(1.5)  # a reconnect would have come by now (its first backoff is 1 s)
    assert (await harness.status(sam))["is_online"] is False


async def test_the_favorite_is_told_the_priority_window_passed(browser: Browser, harness: Harness) -> None:
    sam = await harness.create_mechanic("Sam")
    page = await _mechanic(browser, harness, sam)
    booked = await harness.book(routing="priority", preferred_mechanic_id=sam)
    await expect(page.locator("#offers")).to_contain_text("★ Priority request from your favorite customer")
    await harness.wait_for(booked["id"], phase="broadcast")
    card = page.locator("#offers li")
    await expect(card).to_contain_text("Your priority window passed: now open to every mechanic")
    await expect(card).to_contain_text("Open to every available mechanic")


async def test_a_workshops_member_is_offered_it_for_the_workshop(browser: Browser, harness: Harness) -> None:
    sam = await harness.create_mechanic("Sam")
    created = await harness.http.post("/api/admin/workshops", json={"name": "Patel Motors"}, headers=harness.admin)
    patel = created.json()["id"]
    await harness.http.put(f"/api/admin/workshops/{patel}/members/{sam}", headers=harness.admin)
    page = await _mechanic(browser, harness, sam)
    await harness.book(routing="priority", preferred_workshop_id=patel)
    await expect(page.locator("#offers")).to_contain_text("★ Priority request for Patel Motors")
    await screenshot(page, "mechanic-workshop-offer")


REFUSING_REGISTRATION = """
PushManager.prototype.subscribe = async function () {
  throw new DOMException("Registration failed - permission denied", "AbortError");
};
"""


async def test_a_failed_notification_subscription_is_said_plainly(
    browser: Browser, settings: Settings, redis: object
) -> None:
    async with start_server(replace(settings, web_push=True)) as harness:
        sam = await harness.create_mechanic("Sam")
        context = await browser.new_context(permissions=["notifications"], viewport=PHONE)
        await context.add_init_script(REFUSING_REGISTRATION)
        page = await context.new_page()
        await page.goto(f"{harness.base_url}/console/mechanic/")
        await page.get_by_label("token").fill(harness.token(Role.MECHANIC, sam))
        await page.get_by_role("button", name="Connect").click()
        await page.get_by_role("button", name="Turn on notifications").click()
        errors = page.locator("#errors")
        await expect(errors).to_contain_text(
            "Your browser could not register this device with its notification service."
        )
        await expect(errors).not_to_contain_text("Registration failed")


@pytest.mark.parametrize("phone", WIDTHS)
async def test_the_operations_page_reads_well_and_keeps_its_errors(
    browser: Browser, harness: Harness, phone: bool
) -> None:
    sam = await harness.create_mechanic("Sam Rivera")
    sam_app = await harness.connect(sam)
    booked = await harness.book(routing="broadcast")
    await sam_app.expect("offer", request_id=booked["id"])
    await sam_app.send({"type": "accept", "request_id": booked["id"]})
    await sam_app.expect("accepted", request_id=booked["id"])
    context = await browser.new_context(viewport=PHONE if phone else {"width": 1100, "height": 800})
    page = await context.new_page()
    await page.clock.install()
    await page.goto(f"{harness.base_url}/console/ops/")
    await page.get_by_label("token").fill(harness.admin_token)
    await page.get_by_role("button", name="Sign in").click()

    kpis = page.locator("#kpis")
    await expect(kpis).to_contain_text(re.compile(r"broadcast \d+\.\d s"))  # seconds, not "0.082" minutes
    await expect(page.locator("#chart-time")).to_contain_text("Not enough data yet")
    smallest_text = await page.evaluate(
        """() => Math.min(...[...document.querySelectorAll('.chart svg text')].map(
             (t) => parseFloat(t.getAttribute('font-size')) * t.getScreenCTM().a))"""
    )
    assert smallest_text >= 11, smallest_text
    broken_words = await page.evaluate(
        """() => [...document.querySelectorAll('th, td')].filter((cell) => {
             const words = cell.textContent.split(/\\s+/).filter(Boolean);
             const range = document.createRange();
             return [...cell.childNodes].some((node) => node.nodeType === Node.TEXT_NODE && words.some((word) => {
               const at = node.textContent.indexOf(word);
               if (at < 0) return false;
               range.setStart(node, at);
               range.setEnd(node, at + word.length);
               return range.getClientRects().length > 1;
             }));
           }).map((cell) => cell.textContent)"""
    )
    assert broken_words == [], broken_words

    await page.locator("#timeline-id").fill("00000000-0000-4000-8000-00000000dead")
    await page.get_by_role("button", name="Show timeline").click()
    await expect(page.locator("#errors")).to_contain_text("No such session request.")
    await page.clock.run_for(12_000)  # two refreshes later, it is still there
    await expect(page.locator("#errors")).to_contain_text("No such session request.")

    await page.get_by_label("Mechanic", exact=True).fill("rivera")
    await page.get_by_role("button", name="Find requests").click()
    await expect(page.locator("#errors")).to_be_empty()  # the next action clears it
    await expect(page.locator("#found-count")).to_have_text("1 request, newest first.")
    await page.locator("#found").get_by_role("button", name=f"Timeline of request {booked['id']}").click()
    await expect(page.locator("#timeline")).to_contain_text("Accepted · Sam Rivera")
    await screenshot(page, f"ops-console{'-phone' if phone else ''}")
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0
