// The mechanic console's service worker: shows a priority request pushed while the console is closed, and opens
// (or focuses) the console on that offer when the notification is tapped.
const CONSOLE = new URL("./", self.location).href;

self.addEventListener("push", (event) => {
  const data = event.data ? event.data.json() : {};
  event.waitUntil(self.registration.showNotification(data.title || "favdispatch", {
    body: data.body || "",
    tag: data.request_id, // a resend replaces the notification instead of stacking
    requireInteraction: true,
    data,
  }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const target = new URL(event.notification.data?.url || CONSOLE, self.location.origin).href;
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    const open = windows.find((client) => client.url.startsWith(CONSOLE));
    if (open) {
      await open.focus();
      return open.navigate(target);
    }
    return self.clients.openWindow(target);
  })());
});
