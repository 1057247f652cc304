"""Unmodified google-auth impersonates a service account through esprit's IAM Credentials API.

usage: iam_impersonate.py allowed KEY_FILE IAM_URL TARGET AUDIENCE ISSUER TARGET_JWKS_URL
       iam_impersonate.py refused KEY_FILE IAM_URL TARGET

KEY_FILE is the caller's key file; its token_uri is esprit's token endpoint. google-auth sends
the IAM Credentials calls to the fixed host iamcredentials.googleapis.com: every new
requests.Session gets a transport adapter that sends that host to IAM_URL (esprit's key server)
and refuses every other host that is not loopback, so nothing leaves the machine.

allowed: impersonated_credentials.Credentials gets an access token of TARGET
(generateAccessToken; expireTime parsed by the library); IDTokenCredentials gets an ID token
(generateIdToken, include_email=True) that google.oauth2.id_token.verify_token verifies against
ISSUER/oauth2/v1/certs, with iss, aud, email and email_verified compared here; signJwt (called
through an AuthorizedSession of the caller) returns a JWT that PyJWT verifies against
TARGET_JWKS_URL. Prints "impersonated" on success.
refused: the caller has no role: refreshing the impersonated credentials raises RefreshError
whose text carries PERMISSION_DENIED. Prints "refused".
Exits non-zero on any failure.
"""

import datetime
import ipaddress
import json
import os
import sys
import time
import urllib.parse

# Before google.auth is imported: no mTLS endpoint, no regional-access-boundary lookups.
os.environ["GOOGLE_API_USE_CLIENT_CERTIFICATE"] = "false"
os.environ.pop("GOOGLE_SDK_EXPERIMENTAL_PYTHON_REGIONAL_ACCESS_BOUNDARY_LOOKUP_ENABLED", None)

import jwt  # noqa: E402
import requests  # noqa: E402
import requests.adapters  # noqa: E402
from google.auth import exceptions, iam, impersonated_credentials  # noqa: E402
from google.auth.transport.requests import AuthorizedSession, Request  # noqa: E402
from google.oauth2 import id_token, service_account  # noqa: E402

IAM_HOST = "iamcredentials.googleapis.com"
TIMEOUT = 20


def fail(message):
    print(f"iam_impersonate: {message}", file=sys.stderr)
    sys.exit(1)


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def install_router(iam_url):
    """Mounts, on every new requests.Session, an adapter that routes IAM_HOST to iam_url."""
    local = urllib.parse.urlsplit(iam_url)

    class Router(requests.adapters.HTTPAdapter):
        def send(self, request, **kwargs):
            url = urllib.parse.urlsplit(request.url)
            if url.hostname == IAM_HOST:
                request.url = urllib.parse.urlunsplit(
                    (local.scheme, local.netloc, url.path, url.query, ""))
            elif not is_loopback(url.hostname or ""):
                raise requests.exceptions.ConnectionError(
                    f"iam_impersonate: refusing a request to {url.hostname}")
            kwargs["timeout"] = kwargs.get("timeout") or TIMEOUT
            return super().send(request, **kwargs)

    original_init = requests.Session.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        router = Router()
        self.mount("https://", router)
        self.mount("http://", router)

    requests.Session.__init__ = init


class TimedRequest(Request):
    """google-auth's transport with a short timeout (its default is 120 s)."""

    def __call__(self, *args, timeout=TIMEOUT, **kwargs):
        return super().__call__(*args, timeout=timeout, **kwargs)


def allowed(key_file, target, audience, issuer, target_jwks_url):
    request = TimedRequest(requests.Session())
    source = service_account.Credentials.from_service_account_file(
        key_file, scopes=["https://www.googleapis.com/auth/cloud-platform"])

    # generateAccessToken.
    target_credentials = impersonated_credentials.Credentials(
        source_credentials=source,
        target_principal=target,
        target_scopes=["https://www.googleapis.com/auth/cloud-platform"],
        lifetime=600,
    )
    target_credentials.refresh(request)
    if not target_credentials.token or not target_credentials.valid:
        fail("generateAccessToken: no valid token")
    # expiry is a naive UTC datetime in google-auth.
    expiry = target_credentials.expiry.replace(tzinfo=datetime.timezone.utc)
    left = expiry.timestamp() - time.time()
    if not 500 <= left <= 610:
        fail(f"generateAccessToken: expiry in {left} s, expected about 600")

    # generateIdToken (its own AuthorizedSession: a new requests.Session, routed too).
    id_credentials = impersonated_credentials.IDTokenCredentials(
        target_credentials, target_audience=audience, include_email=True)
    id_credentials.refresh(request)
    token = id_credentials.token
    claims = id_token.verify_token(token, request, audience=audience,
                                   certs_url=f"{issuer}/oauth2/v1/certs")
    if claims.get("iss") != issuer:
        fail(f"ID token: iss {claims.get('iss')!r}, expected {issuer!r}")
    if claims.get("aud") != audience:
        fail(f"ID token: aud {claims.get('aud')!r}")
    if claims.get("email") != target or claims.get("email_verified") is not True:
        fail(f"ID token: email {claims.get('email')!r} verified {claims.get('email_verified')!r}")

    # signJwt, called as the caller (the source credentials, re-scoped to iam).
    session = AuthorizedSession(source.with_scopes(iam._IAM_SCOPE))
    now = int(time.time())
    payload = {"iss": target, "sub": target, "aud": audience, "iat": now, "exp": now + 300}
    response = session.post(iam._IAM_SIGNJWT_ENDPOINT.format(target),
                            json={"payload": json.dumps(payload), "delegates": None},
                            timeout=TIMEOUT)
    if response.status_code != 200:
        fail(f"signJwt: {response.status_code} {response.text}")
    answer = response.json()
    signed = answer["signedJwt"]
    if jwt.get_unverified_header(signed).get("kid") != answer["keyId"]:
        fail("signJwt: the JWT's kid is not keyId")
    key = jwt.PyJWKClient(target_jwks_url, cache_keys=False).get_signing_key_from_jwt(signed)
    verified = jwt.decode(signed, key.key, algorithms=["RS256", "ES256"], audience=audience,
                          issuer=target)
    if verified != payload:
        fail(f"signJwt: claims {verified!r}, expected {payload!r}")
    print("impersonated")


def refused(key_file, target):
    request = TimedRequest(requests.Session())
    source = service_account.Credentials.from_service_account_file(
        key_file, scopes=["https://www.googleapis.com/auth/cloud-platform"])
    target_credentials = impersonated_credentials.Credentials(
        source_credentials=source, target_principal=target,
        target_scopes=["https://www.googleapis.com/auth/cloud-platform"])
    try:
        target_credentials.refresh(request)
    except exceptions.RefreshError as err:
        if "PERMISSION_DENIED" not in str(err):
            fail(f"RefreshError without PERMISSION_DENIED: {err}")
        print("refused")
        return
    fail("impersonation without the role succeeded")


def main():
    args = sys.argv[1:]
    if len(args) == 7 and args[0] == "allowed":
        install_router(args[2])
        allowed(args[1], args[3], args[4], args[5], args[6])
    elif len(args) == 4 and args[0] == "refused":
        install_router(args[2])
        refused(args[1], args[3])
    else:
        fail(__doc__)


if __name__ == "__main__":
    main()
