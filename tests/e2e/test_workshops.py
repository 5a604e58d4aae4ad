"""Workshops in the consoles: operations builds a team, a customer books their favorite workshop again."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("playwright.async_api", reason="browser tests skipped: Playwright is not installed")

from playwright.async_api import Browser, expect

from tests.e2e.conftest import screenshot
from tests.e2e.test_consoles import _customer, _mechanic, _open
from tests.helpers import Harness

WIDTHS = [pytest.param(False, id="desktop"), pytest.param(True, id="phone")]


async def _workshop(harness: Harness, name: str, *members: str) -> str:
    workshop_id = str(
        (await harness.http.post("/api/admin/workshops", json={"name": name}, headers=harness.admin)).json()["id"]
    )
    for member in members:
        await harness.http.put(f"/api/admin/workshops/{workshop_id}/members/{member}", headers=harness.admin)
    body = {"provider_id": workshop_id, "provider_type": "workshop"}
    await harness.http.post("/api/customer/favorites", json=body, headers=harness.customer)
    return workshop_id


@pytest.mark.parametrize("phone", WIDTHS)
async def test_operations_creates_a_workshop_and_manages_its_members(
    browser: Browser, harness: Harness, phone: bool
) -> None:
    sam = await harness.create_mechanic("Sam")
    page = await _open(browser, harness, "ops", harness.admin_token, phone=phone)
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.get_by_label("New workshop's name").fill("Rivera Auto")
    await page.get_by_role("button", name="Create workshop").click()
    card = page.locator("#workshops > li", has_text="Rivera Auto")
    await expect(card).to_contain_text("0 members")
    await card.get_by_label("Mechanic to add to Rivera Auto").fill("Sam")  # picked by name
    await card.get_by_role("button", name="Add member").click()
    await expect(card).to_contain_text("1 member")
    await expect(card).to_contain_text("○ Offline Sam")
    await screenshot(page, f"ops-workshops{'-phone' if phone else ''}")
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    listed = (await harness.http.get("/api/admin/workshops", headers=harness.admin)).json()["workshops"]
    assert [m["mechanic_id"] for m in listed[0]["members"]] == [sam]
    await card.get_by_role("button", name="Remove Sam from Rivera Auto").click()
    await expect(card).to_contain_text("0 members")
    await card.get_by_role("button", name="Delete workshop Rivera Auto").click()
    await expect(page.locator("#workshops > li")).to_have_count(0)
    assert (await harness.http.get("/api/admin/workshops", headers=harness.admin)).json()["workshops"] == []


async def test_book_again_a_favorite_workshop(browser: Browser, harness: Harness) -> None:
    """The modal counts the members available now; a member's console gets the offer and accepts."""
    sam, alex = await harness.create_mechanic("Sam"), await harness.create_mechanic("Alex")
    await _workshop(harness, "Rivera Auto", sam, alex)
    sam_console = await _mechanic(browser, harness, sam)
    await _mechanic(browser, harness, alex)
    customer = await _customer(browser, harness, phone=True)
    card = customer.locator("#favorites-list li", has_text="Rivera Auto")
    await expect(card).to_contain_text("● 2 mechanics available now")
    await card.get_by_role("button", name="Book Again with Rivera Auto").click()
    dialog = customer.get_by_role("dialog")
    await expect(dialog).to_contain_text("● 2 mechanics available now")
    await expect(dialog).to_contain_text("your favorite workshop's mechanics get notified first")
    await screenshot(customer, "customer-availability-workshop")
    await dialog.get_by_role("button", name="Continue with Rivera Auto").click()
    await expect(customer.locator(".request-message")).to_have_text("Waiting for a mechanic at Rivera Auto…")
    await sam_console.get_by_role("button", name="Accept").click()
    await expect(customer.locator(".request-message")).to_have_text("Sam accepted your request.", timeout=10_000)


async def test_an_offline_workshop_offers_notify_and_wait(browser: Browser, harness: Harness) -> None:
    sam = await harness.create_mechanic("Sam")
    await _workshop(harness, "Rivera Auto", sam)
    sam_app = await harness.connect(sam)
    await sam_app.close()
    customer = await _customer(browser, harness)
    card = customer.locator("#favorites-list li", has_text="Rivera Auto")
    await card.get_by_role("button", name="Book Again").click()
    dialog = customer.get_by_role("dialog")
    await expect(dialog).to_contain_text("○ Currently offline · last seen just now")
    await dialog.get_by_role("button", name="Notify & Wait for Rivera Auto").click()
    await expect(customer.locator(".request-message")).to_contain_text("No one at Rivera Auto is online")
