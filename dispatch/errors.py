"""The domain's errors. Each has a stable `code` that the HTTP API and the socket send as is.

DomainError
├── NotFound                      404
│   ├── MechanicNotFound          mechanic_not_found
│   └── RequestNotFound           request_not_found
├── InvalidInput                  422  validation_error
├── Conflict                      409
│   ├── RequestNotCancellable     request_not_cancellable
│   └── RequestNotCompletable     request_not_completable
├── OfferUnavailable              409  offer_unavailable (taken, cancelled, or not offered to you)
├── NotYourRequest                403  not_your_request
├── PaymentRequired               402  payment_required (payments are on: book through checkout)
├── PaymentsDisabled              409  payments_disabled (payments are off: book directly)
├── InvalidWebhook                400  invalid_signature
│   └── InvalidMetadata           400  invalid_metadata
├── PaymentProviderError          502  payment_provider_error
└── InternalError                 500  internal_error (an unexpected failure; the client may retry)
"""

from __future__ import annotations


class DomainError(Exception):
    code = "error"
    status = 400
    default_message = "The request could not be completed."

    def __init__(self, message: str | None = None, *, request_id: str | None = None) -> None:
        self.message = message or self.default_message
        self.request_id = request_id
        super().__init__(self.message)


class NotFound(DomainError):
    code = "not_found"
    status = 404
    default_message = "Not found."


class MechanicNotFound(NotFound):
    code = "mechanic_not_found"
    default_message = "This mechanic is no longer available."


class RequestNotFound(NotFound):
    code = "request_not_found"
    default_message = "No such session request."


class InvalidInput(DomainError):
    code = "validation_error"
    status = 422


class Conflict(DomainError):
    code = "conflict"
    status = 409


class RequestNotCancellable(Conflict):
    code = "request_not_cancellable"
    default_message = "This request can no longer be cancelled."


class RequestNotCompletable(Conflict):
    code = "request_not_completable"
    default_message = "Only an accepted request can be completed."


class OfferUnavailable(DomainError):
    code = "offer_unavailable"
    status = 409
    default_message = "This request was taken, cancelled, or not offered to you."


class NotYourRequest(DomainError):
    code = "not_your_request"
    status = 403
    default_message = "This request is not assigned to you."


class PaymentRequired(DomainError):
    code = "payment_required"
    status = 402
    default_message = "Payments are on: book through POST /api/checkout."


class PaymentsDisabled(DomainError):
    code = "payments_disabled"
    status = 409
    default_message = "Payments are off on this server: book with POST /api/session-requests."


class InvalidWebhook(DomainError):
    code = "invalid_signature"
    status = 400
    default_message = "The Stripe-Signature header does not verify (forged, or older than the tolerance)."


class InvalidMetadata(InvalidWebhook):
    code = "invalid_metadata"
    default_message = "The Checkout Session's metadata cannot make a session request."


class PaymentProviderError(DomainError):
    code = "payment_provider_error"
    status = 502
    default_message = "Stripe could not create the checkout; please retry."


class InternalError(DomainError):
    code = "internal_error"
    status = 500
    default_message = "Something went wrong on our side; please retry."
