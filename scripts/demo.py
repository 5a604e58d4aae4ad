"""Demo data for `make run`: a few mechanics, a workshop and a customer with fixed ids, and tokens to play them."""

from __future__ import annotations

from dataclasses import dataclass

from api.auth import Role, mint_token
from base.database import open_database
from dispatch.catalogue import ImportedMechanic, ImportedWorkshop, import_catalogue
from dispatch.mechanics import ProviderType

DEMO_MECHANICS = {
    "6a0f6b0e-5b8c-4d3e-9a51-5a9d0c1e0001": ("Sam Rivera", "independent"),
    "6a0f6b0e-5b8c-4d3e-9a51-5a9d0c1e0002": ("Alex Chen", "independent"),
    "6a0f6b0e-5b8c-4d3e-9a51-5a9d0c1e0003": ("Priya Patel", "workshop"),
}
# A workshop a customer can favorite: whichever of its members is free takes the booking.
DEMO_WORKSHOP = ("6a0f6b0e-5b8c-4d3e-9a51-5a9d0c1e0100", "Patel Motors")
DEMO_WORKSHOP_MEMBERS = ("6a0f6b0e-5b8c-4d3e-9a51-5a9d0c1e0002", "6a0f6b0e-5b8c-4d3e-9a51-5a9d0c1e0003")
DEMO_CUSTOMER = ("c5e1d0a2-7f3b-4e6a-8d2c-1b9e0f4a0001", "Jordan Lee")
DEMO_ADMIN = ("a0d1e2f3-0000-4000-8000-000000000001", "Ops")


@dataclass(frozen=True)
class DemoUser:
    role: str
    id: str
    name: str
    token: str


async def seed(database_url: str) -> None:
    """Insert the demo mechanics and workshop if missing (idempotent)."""
    database = open_database(database_url)
    await database.connect()
    try:
        await import_catalogue(
            database,
            [ImportedMechanic(i, name, ProviderType(kind)) for i, (name, kind) in DEMO_MECHANICS.items()],
            [ImportedWorkshop(DEMO_WORKSHOP[0], DEMO_WORKSHOP[1], DEMO_WORKSHOP_MEMBERS)],
        )
    finally:
        await database.disconnect()


def demo_users(secret: str) -> list[DemoUser]:
    users = [
        DemoUser("mechanic", i, name, mint_token(secret, sub=i, role=Role.MECHANIC, name=name))
        for i, (name, _) in DEMO_MECHANICS.items()
    ]
    customer_id, customer_name = DEMO_CUSTOMER
    users.append(
        DemoUser(
            "customer",
            customer_id,
            customer_name,
            mint_token(secret, sub=customer_id, role=Role.CUSTOMER, name=customer_name),
        )
    )
    admin_id, admin_name = DEMO_ADMIN
    users.append(
        DemoUser("admin", admin_id, admin_name, mint_token(secret, sub=admin_id, role=Role.ADMIN, name=admin_name))
    )
    return users
