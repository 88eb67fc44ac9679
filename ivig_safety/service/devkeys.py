"""A test CDS client's key and tokens, for trying the service (the README's walk-through); not for production, where
the EHR signs its own tokens and publishes its JWK Set.

    python -m ivig_safety.service.devkeys keygen DIR       # DIR/client-key.pem (private) and DIR/jwks.json (public)
    python -m ivig_safety.service.devkeys token DIR AUD [--iss ISSUER] [--lifetime 300]

``token`` prints a fresh ES384 JWT (header kid and typ; claims iss, aud, iat, exp and a new jti) for one call to AUD,
e.g. http://127.0.0.1:8080/cds-services/ivig-order-sign. Tokens are single-use: the service refuses a jti twice.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

KID = "dev-client-1"
DEFAULT_ISSUER = "https://ehr.example.org/"


def keygen(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    private = folder / "client-key.pem"
    with os.fdopen(os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as stream:
        stream.write(pem)
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    (folder / "jwks.json").write_text(json.dumps({"keys": [{**public, "kid": KID, "use": "sig", "alg": "ES384"}]},
                                                 indent=2) + "\n")
    print(f"{private} (private: keep it) and {folder / 'jwks.json'} (public: give it to the service with --trust)")


def token(folder: Path, aud: str, issuer: str, lifetime: int) -> str:
    key = serialization.load_pem_private_key((folder / "client-key.pem").read_bytes(), password=None)
    now = int(time.time())
    claims = {"iss": issuer, "aud": aud, "iat": now, "exp": now + lifetime, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": KID, "typ": "JWT"})  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ivig_safety.service.devkeys", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("keygen", help="write a test client's key pair")
    make.add_argument("folder", type=Path)
    sign = commands.add_parser("token", help="print a fresh token for one call")
    sign.add_argument("folder", type=Path)
    sign.add_argument("aud", help="the URL being called")
    sign.add_argument("--iss", default=DEFAULT_ISSUER)
    sign.add_argument("--lifetime", type=int, default=300)
    args = parser.parse_args()
    if args.command == "keygen":
        keygen(args.folder)
    else:
        print(token(args.folder, args.aud, args.iss, args.lifetime))


if __name__ == "__main__":
    main()
