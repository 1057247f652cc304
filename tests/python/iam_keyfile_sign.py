"""Google's own libraries load a key file that `esprit iam keys create` wrote and sign a JWT
with it, the way the ESP tutorial's token tool does.

usage: iam_keyfile_sign.py KEY_FILE AUDIENCE

Checks that google.oauth2.service_account.Credentials and google.auth.crypt's signer read every
field as Google's files are read, then prints on stdout one JWT made by google.auth.jwt.encode
(iat, exp = iat + 3600, aud, iss = sub = email = the key file's client_email). Exits non-zero
with a message on stderr on any mismatch. RSA key files go through Credentials (which, like
Google, only knows RSA keys); ES256 key files through google.auth.crypt.ES256Signer.
"""

import json
import sys
import time

import google.auth.crypt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
import google.auth.jwt
from google.oauth2 import service_account


def fail(message):
    print(f"iam_keyfile_sign: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) != 3:
        fail("usage: iam_keyfile_sign.py KEY_FILE AUDIENCE")
    path, audience = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as fh:
        info = json.load(fh)

    private_key = serialization.load_pem_private_key(info["private_key"].encode("ascii"), None)
    is_rsa = isinstance(private_key, rsa.RSAPrivateKey)
    if is_rsa:
        creds = service_account.Credentials.from_service_account_file(path)
        if creds.service_account_email != info["client_email"]:
            fail(f"Credentials email {creds.service_account_email!r}")
        if creds.project_id != info["project_id"]:
            fail(f"Credentials project {creds.project_id!r}")
        if creds.signer.key_id != info["private_key_id"]:
            fail(f"Credentials key id {creds.signer.key_id!r}")
        if creds.universe_domain != "googleapis.com":
            fail(f"Credentials universe_domain {creds.universe_domain!r}")
        signer = google.auth.crypt.RSASigner.from_service_account_file(path)
    else:
        signer = google.auth.crypt.ES256Signer.from_service_account_file(path)
    if signer.key_id != info["private_key_id"]:
        fail(f"signer key id {signer.key_id!r}")

    now = int(time.time())
    email = info["client_email"]
    payload = {
        "iat": now,
        "exp": now + 3600,
        "aud": audience,
        "iss": email,
        "sub": email,
        "email": email,
    }
    token = google.auth.jwt.encode(signer, payload)
    print(token.decode("ascii"))


if __name__ == "__main__":
    main()
