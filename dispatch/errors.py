"""The domain's errors. Each has a stable `code` that the HTTP API and the socket send as is.

DomainError
├── NotFound                      404
│   ├── MechanicNotFound          mechanic_not_found
│   └── RequestNotFound           request_not_found
├── InvalidInput                  422  validation_error
├── Conflict                      409
│   └── RequestNotCancellable     request_not_cancellable
├── OfferUnavailable              409  offer_unavailable (taken, cancelled, or not offered to you)
├── NotYourRequest                403  not_your_request
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


class OfferUnavailable(DomainError):
    code = "offer_unavailable"
    status = 409
    default_message = "This request was taken, cancelled, or not offered to you."


class NotYourRequest(DomainError):
    code = "not_your_request"
    status = 403
    default_message = "This request is not assigned to you."


class InternalError(DomainError):
    code = "internal_error"
    status = 500
    default_message = "Something went wrong on our side; please retry."
