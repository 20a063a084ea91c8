"""OCI request signing for the lab's operator requests: draft-cavage HTTP signatures, RSA-SHA256,
`version="1"`, the same signing string as the CER's own signer (`controlplane/capture/src/
oci_sign.rs`, which `controlplane/capture/tests/oci_sign_python.rs` compares with this one).

Signed headers: `date (request-target) host`, plus `x-content-sha256 content-type content-length`
for a request with a body. The RSA signature itself is openssl's (`openssl dgst -sha256 -sign`).

    python3 -m cerlab.oci_sign --method M --path P --host H --date D --key-id K --key-file F [--body B]

prints the headers as one JSON object (in the order they are added).
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import json
import subprocess
import sys
from pathlib import Path


def http_date(t: datetime.datetime) -> str:
    """RFC 7231 IMF-fixdate (`Tue, 15 Nov 1994 08:12:31 GMT`) of an aware datetime."""
    return t.astimezone(datetime.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def key_fingerprint(key_file: Path) -> str:
    """The API key's fingerprint as OCI prints it: MD5 of the public key's DER, `aa:bb:...`."""
    der = subprocess.run(
        ["openssl", "pkey", "-in", str(key_file), "-pubout", "-outform", "DER"],
        stdout=subprocess.PIPE,
        check=True,
    ).stdout
    h = hashlib.md5(der).hexdigest()
    return ":".join(h[i : i + 2] for i in range(0, 32, 2))


def signing_string(method: str, path: str, headers: dict[str, str], names: list[str]) -> str:
    lines = []
    for n in names:
        if n == "(request-target)":
            lines.append(f"(request-target): {method.lower()} {path}")
        else:
            lines.append(f"{n}: {headers[n]}")
    return "\n".join(lines)


def sign(method: str, path: str, host: str, date: str, body: str | None, key_id: str, key_file: Path) -> dict[str, str]:
    """The headers of one signed request: `date`, `host`, the body headers, `authorization`.
    `path` is the request target (path and query); `host` as sent (with `:port` if not 80)."""
    h = {"date": date, "host": host}
    names = ["date", "(request-target)", "host"]
    if body is not None:
        raw = body.encode()
        h["x-content-sha256"] = base64.b64encode(hashlib.sha256(raw).digest()).decode()
        h["content-type"] = "application/json"
        h["content-length"] = str(len(raw))
        names += ["x-content-sha256", "content-type", "content-length"]
    sig = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", str(key_file)],
        input=signing_string(method, path, h, names).encode(),
        stdout=subprocess.PIPE,
        check=True,
    ).stdout
    h["authorization"] = (
        f'Signature version="1",keyId="{key_id}",algorithm="rsa-sha256",headers="{" ".join(names)}",'
        f'signature="{base64.b64encode(sig).decode()}"'
    )
    return h


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m cerlab.oci_sign", description="sign one OCI request; print its headers as JSON")
    ap.add_argument("--method", required=True)
    ap.add_argument("--path", required=True, help="request target: path and query")
    ap.add_argument("--host", required=True)
    ap.add_argument("--date", required=True, help="the Date header, e.g. 'Tue, 15 Nov 1994 08:12:31 GMT'")
    ap.add_argument("--key-id", required=True)
    ap.add_argument("--key-file", required=True, type=Path)
    ap.add_argument("--body", help="the exact body (POST, PUT)")
    a = ap.parse_args(argv)
    print(json.dumps(sign(a.method, a.path, a.host, a.date, a.body, a.key_id, a.key_file)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
