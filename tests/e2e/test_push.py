"""The mechanic console turns notifications on and off: a real service worker, and the subscription reaching the
server, which then pushes to the local push-service stand-in.

Headless Chromium refuses push registration, and the browser vendors' push services cannot be reached from here
anyway: the page's `PushManager` answers with a subscription on the stand-in (its keys are the stand-in device's),
standing in for that registration only. The service worker, the permission, the console and the server are real.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

pytest.importorskip("playwright.async_api", reason="browser tests skipped: Playwright is not installed")

from playwright.async_api import Browser, expect

from api.auth import Role
from api.settings import Settings
from tests.e2e.conftest import screenshot
from tests.helpers import Harness, start_server
from tests.push_standin import PushStandIn, push_standin

REGISTRATION_STANDIN = """
(() => {
  const subscription = %s;
  const KEPT = "standin-push-subscribed"; // a browser keeps a registration's subscription across its tabs
  const made = () => ({
    endpoint: subscription.endpoint,
    toJSON: () => subscription,
    unsubscribe: async () => { localStorage.removeItem(KEPT); return true; },
  });
  PushManager.prototype.subscribe = async function () { localStorage.setItem(KEPT, "1"); return made(); };
  PushManager.prototype.getSubscription = async function () { return localStorage.getItem(KEPT) ? made() : null; };
})();
"""


@pytest.fixture
async def pushing(settings: Settings, redis: object) -> AsyncIterator[tuple[Harness, PushStandIn]]:
    push_settings = replace(settings, web_push=True, push_endpoints_may_be_loopback_http=True, push_retry_base_s=0.05)
    async with start_server(push_settings) as harness, push_standin(push_settings.vapid_public_key) as standin:
        yield harness, standin


async def test_the_mechanic_console_turns_notifications_on_and_off(
    browser: Browser, pushing: tuple[Harness, PushStandIn]
) -> None:
    harness, standin = pushing
    sam = await harness.create_mechanic("Sam")
    device_id, device = standin.device()
    context = await browser.new_context(permissions=["notifications"], viewport={"width": 390, "height": 844})
    await context.add_init_script(REGISTRATION_STANDIN % json.dumps(device.subscription()))
    page = await context.new_page()
    await page.goto(f"{harness.base_url}/console/mechanic/")
    await page.get_by_label("token").fill(harness.token(Role.MECHANIC, sam))
    await page.get_by_role("button", name="Connect").click()
    await expect(page.locator("#push-state")).to_have_text("○ Notifications are off for this device.")
    await expect(page.locator("#notifications")).to_contain_text("even with this page closed")
    await page.get_by_role("button", name="Turn on notifications").click()
    await expect(page.locator("#push-state")).to_have_text("● Notifications are on for this device.")
    worker = await page.evaluate("navigator.serviceWorker.getRegistration().then((r) => r && r.active && r.scope)")
    assert worker == f"{harness.base_url}/console/mechanic/"
    await screenshot(page, "mechanic-notifications-on")
    await page.close()  # the console is closed: only a push reaches Sam now
    await asyncio.sleep(0.5)  # the socket's close is seen: Sam is offline

    booked = await harness.book(routing="priority", preferred_mechanic_id=sam)
    assert booked["routing"] == "notify_and_wait"
    for _ in range(100):
        if standin.received:
            break
        await asyncio.sleep(0.05)
    assert [(r.device, r.payload["request_id"]) for r in standin.received] == [(device_id, booked["id"])]
    assert standin.refused == []

    page = await context.new_page()
    await page.goto(f"{harness.base_url}/console/mechanic/?offer={booked['id']}")  # where the notification opens
    await page.get_by_label("token").fill(harness.token(Role.MECHANIC, sam))  # a new tab signs in again
    await page.get_by_role("button", name="Connect").click()
    await expect(page.locator("li.opened")).to_contain_text("Priority request from your favorite customer")
    await page.get_by_role("button", name="Turn off notifications").click()
    await expect(page.locator("#push-state")).to_have_text("○ Notifications are off for this device.")
    harness.customer_id = "0f4a2b1c-0000-4000-8000-00000000b002"
    await page.close()
    await asyncio.sleep(0.5)
    await harness.book(routing="notify_and_wait", preferred_mechanic_id=sam)
    await asyncio.sleep(0.5)
    assert standin.attempts == {device_id: 1}
    ops = await context.new_page()  # support reads where the notification went, and how it went
    await ops.goto(f"{harness.base_url}/console/ops/")
    await ops.get_by_label("token").fill(harness.admin_token)
    await ops.get_by_role("button", name="Sign in").click()
    await ops.locator("#timeline-id").fill(booked["id"])
    await ops.get_by_role("button", name="Show timeline").click()
    await expect(ops.locator("#timeline")).to_contain_text("Notification sent to 127.0.0.1 · Sam")
