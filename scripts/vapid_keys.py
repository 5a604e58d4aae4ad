"""Print a new VAPID key pair for Web Push, as the settings take it.

    python -m scripts.vapid_keys

Set both on every host of a deployment (browsers subscribe with the public key: changing it unsubscribes them).
"""

from __future__ import annotations

from api.web_push import new_vapid_private_key, vapid_public_key


def main() -> None:
    private_key = new_vapid_private_key()
    print(f"VAPID_PRIVATE_KEY={private_key}")
    print(f"VAPID_PUBLIC_KEY={vapid_public_key(private_key)}")


if __name__ == "__main__":
    main()
