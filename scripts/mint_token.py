"""Print a JWT for the running server's JWT_SECRET (or the development secret `make run` uses).

python -m scripts.mint_token --role mechanic --sub <uuid> [--name Sam] [--ttl 86400]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run as a file: import the project, and never this file as the stdlib's `token`
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import uuid

from api.auth import Role, mint_token
from api.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", required=True, choices=[r.value for r in Role])
    parser.add_argument("--sub", type=uuid.UUID, default=None, help="the user's UUID (random if omitted)")
    parser.add_argument("--name", default=None)
    parser.add_argument("--ttl", type=int, default=7 * 24 * 3600, help="lifetime in seconds")
    args = parser.parse_args()
    secret = str(load_settings().jwt_secret)
    print(mint_token(secret, sub=str(args.sub or uuid.uuid4()), role=Role(args.role), name=args.name, ttl_s=args.ttl))


if __name__ == "__main__":
    main()
