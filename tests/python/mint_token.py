#!/usr/bin/env python3
"""Mints a JWT with a library esprit did not write, for interop tests.

    mint_token.py google-auth KEY_FILE.json --issuer ISS --audience AUD
        google.auth.crypt.RSASigner from a service-account key file and google.auth.jwt.encode,
        as the ESP tutorial's generate-jwt.py does (kid = the file's private_key_id).
    mint_token.py pyjwt PRIVATE_KEY.pem ALG KID --issuer ISS --audience AUD
        PyJWT with a PKCS#8 private key: RS256, PS256, ES256 or EdDSA.

Prints the token on stdout. Claims: iat, exp = iat + 3600, aud, iss, sub, email.
"""
import argparse
import sys
import time


def claims(issuer, audience):
    now = int(time.time())
    return {"iat": now, "exp": now + 3600, "aud": audience, "iss": issuer,
            "sub": "12345678", "email": "user@example.com"}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("library", choices=["google-auth", "pyjwt"])
    parser.add_argument("key")
    parser.add_argument("alg", nargs="?")
    parser.add_argument("kid", nargs="?")
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--audience", required=True)
    args = parser.parse_args()
    payload = claims(args.issuer, args.audience)
    if args.library == "google-auth":
        import google.auth.crypt
        import google.auth.jwt
        signer = google.auth.crypt.RSASigner.from_service_account_file(args.key)
        token = google.auth.jwt.encode(signer, payload)
    else:
        import jwt
        with open(args.key) as fh:
            key = fh.read()
        token = jwt.encode(payload, key, algorithm=args.alg, headers={"kid": args.kid})
    if isinstance(token, bytes):
        token = token.decode("ascii")
    print(token)


if __name__ == "__main__":
    sys.exit(main())
