"""Google's own Python library, unmodified, against `esprit iam serve --issuer-url`'s token service.

usage: token_service_interop.py KEY_FILE TARGET_AUDIENCE ISSUER

The key file was made with `esprit iam keys create --token-uri ISSUER/token`, so google-auth's
service-account credentials refresh through our token endpoint:
1. service_account.IDTokenCredentials(target_audience=...) gets an ID token;
   google.oauth2.id_token.verify_token checks it against ISSUER/oauth2/v1/certs (X.509 map) and
   ISSUER/oauth2/v3/certs (JWKS); this script compares iss itself (verify_token does not).
2. service_account.Credentials(scopes=[...]) gets an access token.
3. A wrong audience is refused by verify_token.
Prints {"id_token": ..., "access_token": ..., "claims": ...} as JSON on stdout; exits non-zero on
any failure.
"""

import json
import os
import sys

# No regional-access-boundary lookups (they would go to Google), no mTLS endpoint switch.
os.environ.pop("GOOGLE_SDK_EXPERIMENTAL_PYTHON_REGIONAL_ACCESS_BOUNDARY_LOOKUP_ENABLED", None)
os.environ["GOOGLE_API_USE_CLIENT_CERTIFICATE"] = "false"

import google.auth.transport.requests  # noqa: E402
import jwt  # noqa: E402
import requests  # noqa: E402
from google.auth import exceptions  # noqa: E402
from google.oauth2 import id_token, service_account  # noqa: E402

TIMEOUT = 10


class Request(google.auth.transport.requests.Request):
    """google-auth's requests transport with a short timeout (its default is 120 s)."""

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        return super().__call__(url, method, body, headers, timeout=TIMEOUT, **kwargs)


def fail(message):
    print(f"token_service_interop: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) != 4:
        fail(__doc__)
    key_file, audience, issuer = sys.argv[1:]
    request = Request(requests.Session())

    # 1. ID token through the key file's token_uri.
    creds = service_account.IDTokenCredentials.from_service_account_file(
        key_file, target_audience=audience)
    if creds._token_uri != f"{issuer}/token":
        fail(f"the key file's token_uri is {creds._token_uri!r}")
    creds.refresh(request)
    token = creds.token
    if not token or creds.expiry is None:
        fail("no ID token")
    claims = None
    for certs in ("v1", "v3"):
        url = f"{issuer}/oauth2/{certs}/certs"
        claims = id_token.verify_token(token, request, audience=audience, certs_url=url)
        if claims.get("iss") != issuer:
            fail(f"{certs}: iss {claims.get('iss')!r}, want {issuer!r}")
        with open(key_file) as f:
            key = json.load(f)
        if claims.get("email") != key["client_email"] or claims.get("sub") != key["client_id"]:
            fail(f"{certs}: claims {claims}")
        if claims["exp"] - claims["iat"] != 3600:
            fail(f"{certs}: lifetime {claims['exp'] - claims['iat']}")
    for certs in ("v1", "v3"):
        try:
            id_token.verify_token(token, request, audience="https://other.example.com",
                                  certs_url=f"{issuer}/oauth2/{certs}/certs")
        except (ValueError, jwt.exceptions.InvalidAudienceError):
            continue
        fail(f"{certs}: a wrong audience was accepted")

    # 2. Access token with scopes.
    scoped = service_account.Credentials.from_service_account_file(
        key_file, scopes=["https://www.googleapis.com/auth/cloud-platform"])
    scoped.refresh(request)
    if not scoped.token or scoped.expiry is None:
        fail("no access token")

    print(json.dumps({"id_token": token, "access_token": scoped.token, "claims": claims}))


if __name__ == "__main__":
    try:
        main()
    except exceptions.GoogleAuthError as err:
        fail(f"{type(err).__name__}: {err}")
