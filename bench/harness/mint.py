"""Mints a pool of distinct, valid JWTs with a service-account key file (Google's JSON).

    PYTHON -m harness.mint KEY_FILE AUDIENCE COUNT LIFETIME_S OUT

Runs under the project's virtualenv python (scripts/python-env.sh), which has PyJWT and
cryptography; the harness itself needs only the standard library. Writes one token per line.

Every token has the same claims except `jti`, a zero-padded counter, so all tokens (and the
`X-Endpoint-API-UserInfo` header esprit derives from their payload) have the same length, and
every call costs the proxy the same bytes. (The backend runs `echo-server --plain`: its replies
carry the payload only, so response sizes do not depend on the headers.)
"""

import json
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def main(argv):
    key_file, audience, count, lifetime, out_path = argv
    count, lifetime = int(count), int(lifetime)
    with open(key_file) as f:
        key = json.load(f)
    private = serialization.load_pem_private_key(key["private_key"].encode(), None)
    if isinstance(private, rsa.RSAPrivateKey):
        alg = "RS256"
    elif isinstance(private, ec.EllipticCurvePrivateKey):
        alg = "ES256"
    else:
        raise SystemExit("mint: unsupported key type %s" % type(private).__name__)
    email = key["client_email"]
    now = int(time.time())
    width = len(str(count))
    with open(out_path, "w") as out:
        for i in range(count):
            claims = {"iss": email, "sub": email, "email": email, "aud": audience,
                      "iat": now, "exp": now + lifetime, "jti": "bench-%0*d" % (width, i)}
            token = jwt.encode(claims, private, algorithm=alg,
                               headers={"kid": key["private_key_id"], "typ": "JWT"})
            out.write(token + "\n")
    print("%s %d" % (alg, count))


if __name__ == "__main__":
    main(sys.argv[1:])
