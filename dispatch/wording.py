"""The sentence the customer app shows for a request, written once so every client says the same thing."""

from __future__ import annotations

from dispatch.models import FallbackReason, Phase, Routing, SessionRequest, Status

DEFAULT_CUSTOMER_NAME = "A customer"


def customer_message(request: SessionRequest, names: dict[str, str]) -> str:
    """`names` holds the mechanics' names and the favorite workshop's, by id."""
    favorite = names.get(request.preferred_mechanic_id or request.preferred_workshop_id or "", "your mechanic")
    is_workshop = request.preferred_workshop_id is not None
    if request.status is Status.ACCEPTED:
        return f"{names.get(request.mechanic_id or '', 'A mechanic')} accepted your request."
    if request.status is Status.COMPLETED:
        return "Your session is complete."
    if request.status is Status.CANCELLED:
        return "This request was cancelled."
    if request.phase is Phase.PRIORITY:
        if request.routing is Routing.NOTIFY_AND_WAIT and request.priority_notified_at is None:
            if is_workshop:
                return f"No one at {favorite} is online. We'll notify them the moment one of them comes online…"
            return f"{favorite} is offline. We'll notify {favorite} the moment they come online…"
        return f"Waiting for a mechanic at {favorite}…" if is_workshop else f"Waiting for {favorite}…"
    reason = request.reroute_reason
    if reason is FallbackReason.MECHANIC_CANCELLED:
        return "Your mechanic had to cancel. Finding you another mechanic…"
    if reason is FallbackReason.DECLINED:
        return f"{favorite} isn't available right now. Finding you another mechanic…"
    if reason is FallbackReason.MECHANIC_DELETED:
        return "This mechanic is no longer available. Finding you another mechanic…"
    if reason is FallbackReason.WORKSHOP_GONE:
        return "This workshop is no longer available. Finding you another mechanic…"
    if reason in (FallbackReason.WINDOW, FallbackReason.MISSED_ACKS):
        if request.priority_notified_at is None:  # never offered: they did not come online in the window
            return f"{favorite} wasn't online. Finding you another mechanic…"
        return f"{favorite} didn't respond in time. Finding you another mechanic…"
    return "Finding an available mechanic…"
