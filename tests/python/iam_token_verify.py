"""PyJWT verifies a token that `esprit token` minted, with the keys `esprit iam serve` publishes:
once with the JWKS (jwt.PyJWKClient) and once with the X.509 certificate of the token's kid
(cryptography's load_pem_x509_certificate(...).public_key()).

usage: iam_token_verify.py TOKEN JWKS_URL X509_URL AUDIENCE ISSUER SUBJECT EMAIL LIFETIME_SECS

Checks aud, iss, sub, email and exp - iat, and that a wrong audience and a tampered signature
are refused. Prints "verified" and the claims as JSON on stdout; exits non-zero on any failure.
"""

import json
import sys
import urllib.request

import jwt
from cryptography.x509 import load_pem_x509_certificate


def fail(message):
    print(f"iam_token_verify: {message}", file=sys.stderr)
    sys.exit(1)


def check(claims, subject, email, lifetime, how):
    if claims.get("sub") != subject:
        fail(f"{how}: sub {claims.get('sub')!r}")
    if claims.get("email") != email:
        fail(f"{how}: email {claims.get('email')!r}")
    if claims["exp"] - claims["iat"] != lifetime:
        fail(f"{how}: exp - iat = {claims['exp'] - claims['iat']}")


def main():
    if len(sys.argv) != 9:
        fail(__doc__)
    token, jwks_url, x509_url, audience, issuer, subject, email, lifetime = sys.argv[1:]
    lifetime = int(lifetime)
    header = jwt.get_unverified_header(token)
    alg, kid = header["alg"], header["kid"]
    if header.get("typ") != "JWT":
        fail(f"typ {header.get('typ')!r}")
    options = {"require": ["exp", "iat", "aud", "iss", "sub"]}

    # 1. The JWKS.
    jwk_client = jwt.PyJWKClient(jwks_url, cache_keys=False)
    signing_key = jwk_client.get_signing_key_from_jwt(token)
    if signing_key.key_id != kid:
        fail(f"JWKS key id {signing_key.key_id!r} for kid {kid!r}")
    claims = jwt.decode(token, signing_key.key, algorithms=[alg], audience=audience,
                        issuer=issuer, options=options)
    check(claims, subject, email, lifetime, "JWKS")

    # 2. The X.509 certificate of the kid.
    with urllib.request.urlopen(x509_url) as response:
        certificates = json.load(response)
    if kid not in certificates:
        fail(f"kid {kid!r} not in the X.509 map ({sorted(certificates)})")
    public_key = load_pem_x509_certificate(certificates[kid].encode("ascii")).public_key()
    claims = jwt.decode(token, public_key, algorithms=[alg], audience=audience,
                        issuer=issuer, options=options)
    check(claims, subject, email, lifetime, "X.509")

    # 3. Verification is real: a wrong audience and a tampered signature are refused.
    try:
        jwt.decode(token, public_key, algorithms=[alg], audience="someone-else.example.com")
        fail("a wrong audience was accepted")
    except jwt.InvalidAudienceError:
        pass
    head, body, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    try:
        jwt.decode(".".join([head, body, flipped]), public_key, algorithms=[alg],
                   audience=audience)
        fail("a tampered signature was accepted")
    except jwt.InvalidSignatureError:
        pass

    print("verified")
    print(json.dumps(claims, sort_keys=True))


if __name__ == "__main__":
    main()
