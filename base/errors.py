"""Every error the server names, in one tree. Each has a stable `code` that HTTP and the socket send as is.

FavdispatchError
├── InvalidToken                  401  unauthorized (missing, malformed, badly signed, expired, unknown role)
├── Forbidden                     403  forbidden (a valid token whose role may not do this)
├── NotFound                      404
│   ├── MechanicNotFound          mechanic_not_found
│   ├── WorkshopNotFound          workshop_not_found (deleted, or no mechanics left to book)
│   └── RequestNotFound           request_not_found
├── InvalidInput                  422  validation_error (names the field)
├── BodyTooLarge                  413  body_too_large
├── TooManyStreams                429  too_many_streams (a customer's live streams open at once, per process)
├── Conflict                      409
│   ├── MechanicInOtherWorkshop   mechanic_in_other_workshop
│   ├── PushEndpointTaken         push_endpoint_taken
│   ├── RequestNotCancellable     request_not_cancellable
│   └── RequestNotCompletable     request_not_completable
├── OfferUnavailable              409  offer_unavailable (taken, cancelled, or not offered to you)
├── NotYourRequest                403  not_your_request
├── ProtocolError                 400  bad_message (a body or frame that is not well-formed JSON)
│   ├── UnknownType               unknown_type
│   └── InvalidField              invalid_field
├── PaymentRequired               402  payment_required (payments are on: book through checkout)
├── PaymentsDisabled              409  payments_disabled (payments are off: book directly)
├── WebPushDisabled               409  web_push_disabled (the operator set WEB_PUSH=off)
├── InvalidWebhook                400  invalid_signature
│   └── InvalidMetadata           400  invalid_metadata
├── PaymentProviderError          502  payment_provider_error (Stripe's errors, translated at the api edge)
└── InternalError                 500  internal_error (an unexpected failure; the client may retry)
"""

from __future__ import annotations


class FavdispatchError(Exception):
    code = "error"
    status = 400
    default_message = "The request could not be completed."

    def __init__(self, message: str | None = None, *, request_id: str | None = None) -> None:
        self.message = message or self.default_message
        self.request_id = request_id
        super().__init__(self.message)


class InvalidToken(FavdispatchError):
    code = "unauthorized"
    status = 401
    default_message = "A valid bearer token is required."


class Forbidden(FavdispatchError):
    code = "forbidden"
    status = 403
    default_message = "Your role may not do this."


class NotFound(FavdispatchError):
    code = "not_found"
    status = 404
    default_message = "Not found."


class MechanicNotFound(NotFound):
    code = "mechanic_not_found"
    default_message = "This mechanic is no longer available."


class WorkshopNotFound(NotFound):
    code = "workshop_not_found"
    default_message = "This workshop is no longer available."


class RequestNotFound(NotFound):
    code = "request_not_found"
    default_message = "No such session request."


class InvalidInput(FavdispatchError):
    code = "validation_error"
    status = 422


class BodyTooLarge(FavdispatchError):
    code = "body_too_large"
    status = 413
    default_message = "The request body is too large."


class TooManyStreams(FavdispatchError):
    code = "too_many_streams"
    status = 429
    default_message = "Too many live streams are open for you: close one first."


class Conflict(FavdispatchError):
    code = "conflict"
    status = 409


class MechanicInOtherWorkshop(Conflict):
    code = "mechanic_in_other_workshop"
    default_message = "This mechanic belongs to another workshop: remove them there first."


class RequestNotCancellable(Conflict):
    code = "request_not_cancellable"
    default_message = "This request can no longer be cancelled."


class RequestAlreadyOpen(Conflict):
    code = "request_already_open"
    default_message = "You already have an open request for this favorite: follow it, or cancel it to book again."


class IdempotencyKeyReused(InvalidInput):
    code = "idempotency_key_reused"
    default_message = "This Idempotency-Key was used with another request body (keys are kept for 24 hours)."


class PushEndpointTaken(Conflict):
    code = "push_endpoint_taken"
    default_message = "This push endpoint is registered to another mechanic."


class RequestNotCompletable(Conflict):
    code = "request_not_completable"
    default_message = "Only an accepted request can be completed."


class OfferUnavailable(FavdispatchError):
    code = "offer_unavailable"
    status = 409
    default_message = "This request was taken, cancelled, or not offered to you."


class NotYourRequest(FavdispatchError):
    code = "not_your_request"
    status = 403
    default_message = "This request is not assigned to you."


class ProtocolError(FavdispatchError):
    """A socket frame that is not a client message; answered with an `error` frame, the socket stays open."""

    code = "bad_message"
    status = 400
    default_message = "Frames must be JSON objects."


class UnknownType(ProtocolError):
    code = "unknown_type"


class InvalidField(ProtocolError):
    code = "invalid_field"


class PaymentRequired(FavdispatchError):
    code = "payment_required"
    status = 402
    default_message = "Payments are on: book through POST /api/checkout."


class PaymentsDisabled(FavdispatchError):
    code = "payments_disabled"
    status = 409
    default_message = "Payments are off on this server: book with POST /api/session-requests."


class WebPushDisabled(FavdispatchError):
    code = "web_push_disabled"
    status = 409
    default_message = "Web Push is off on this server (WEB_PUSH=off)."


class InvalidWebhook(FavdispatchError):
    code = "invalid_signature"
    status = 400
    default_message = "The Stripe-Signature header does not verify (forged, or older than the tolerance)."


class InvalidMetadata(InvalidWebhook):
    code = "invalid_metadata"
    default_message = "The Checkout Session's metadata cannot make a session request."


class PaymentProviderError(FavdispatchError):
    code = "payment_provider_error"
    status = 502
    default_message = "Stripe could not create the checkout; please retry."


class InternalError(FavdispatchError):
    code = "internal_error"
    status = 500
    default_message = "Something went wrong on our side; please retry."
