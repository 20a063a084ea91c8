"""The three emulated providers' APIs as the cloud's operator uses them: one HTTP request from
inside a site's fabric namespace (`emu_http`, through the `_http` helper), OCI requests signed
with the site's API key, and giving a workload NIC a secondary IP (`provider_assign_to_workload`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
import urllib.error
import urllib.request
from urllib.parse import urlencode

from .messages import die
from .oci_sign import http_date, key_fingerprint, sign
from .processes import ns_run
from .topology import API_ADDR, LAB_SCRIPT, OCI_TENANCY, OCI_USER, PROVIDER, PY, Lab


def emu_http(
    lab: Lab, site: str, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    """An HTTP request to SITE's emulator from inside its fabric namespace: (status, headers, body)."""
    args = [PY, str(LAB_SCRIPT), "_http", method, f"http://{API_ADDR}{path}"]
    for k, v in (headers or {}).items():
        args += ["-H", f"{k}: {v}"]
    if body is not None:
        args += ["--data", body]
    p = ns_run(lab.fab_ns(site), *args, check=False, timeout=40)
    try:
        r = json.loads(p.stdout)
    except ValueError:
        die(f"emulator request {method} {path} at {site} failed: {p.stderr.strip()}")
    return r["status"], r["headers"], r["body"]


def oci_headers(lab: Lab, method: str, path: str, body: str | None) -> dict[str, str]:
    """The headers of an OCI request signed now with the lab's API key (without `host`, which
    the HTTP client sends itself)."""
    key = lab.f("oci-api-key.pem")
    key_id = f"{OCI_TENANCY}/{OCI_USER}/{key_fingerprint(key)}"
    h = sign(method, path, API_ADDR, http_date(datetime.datetime.now(datetime.UTC)), body, key_id, key)
    del h["host"]
    return h


def provider_assign_to_workload(lab: Lab, site: str, ip: str) -> None:
    """As the cloud's operator would: give the workload's NIC the secondary IP (provider API)."""
    p = PROVIDER[site]
    end = time.time() + 45
    last = ""
    while time.time() < end:
        if site == "aws":
            form = urlencode(
                {
                    "Action": "AssignPrivateIpAddresses",
                    "Version": "2016-11-15",
                    "NetworkInterfaceId": p["wl_nic"],
                    "PrivateIpAddress.1": ip,
                    "AllowReassignment": "true",
                }
            )
            st, _, body = emu_http(lab, site, "POST", "/", form, {"content-type": "application/x-www-form-urlencoded"})
            if st == 200:
                return
            last = body
        elif site == "azure":
            path = p["wl_nic"] + "?api-version=2023-09-01"
            auth = {"authorization": "Bearer cer-lab"}
            st, hdr, body = emu_http(lab, site, "GET", path, headers=auth)
            if st != 200:
                last = body
                time.sleep(1)
                continue
            nic = json.loads(body)
            cfgs = nic["properties"]["ipConfigurations"]
            if not any(c["properties"].get("privateIPAddress") == ip for c in cfgs):
                cfgs.append(
                    {
                        "name": "lab-" + ip.replace(".", "-"),
                        "properties": {
                            "privateIPAddress": ip,
                            "privateIPAllocationMethod": "Static",
                            "primary": False,
                            "subnet": {"id": p["subnet"]},
                        },
                    }
                )
            h = dict(auth)
            h["content-type"] = "application/json"
            if nic.get("etag"):
                h["if-match"] = nic["etag"]
            st, _, body = emu_http(lab, site, "PUT", path, json.dumps(nic), h)
            if st in (200, 201):
                return
            last = body
        else:
            q = f"/20160918/privateIps?ipAddress={ip}&subnetId={p['subnet']}"
            st, _, body = emu_http(lab, site, "GET", q, headers=oci_headers(lab, "GET", q, None))
            items = json.loads(body) if st == 200 else []
            if st != 200:
                last = body
            elif items:
                pid = items[0]["id"]
                if items[0].get("vnicId") == p["wl_nic"]:
                    return
                path = f"/20160918/privateIps/{pid}"
                b = json.dumps({"vnicId": p["wl_nic"]})
                st, _, body = emu_http(lab, site, "PUT", path, b, oci_headers(lab, "PUT", path, b))
                if st == 200:
                    return
                last = body
            else:
                path = "/20160918/privateIps"
                b = json.dumps({"vnicId": p["wl_nic"], "ipAddress": ip})
                st, _, body = emu_http(lab, site, "POST", path, b, oci_headers(lab, "POST", path, b))
                if st in (200, 201):
                    return
                last = body
        time.sleep(1)
    die(f"{site}: could not assign {ip} to the workload NIC: {last[:300]}")


def helper_http(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="lab _http")
    ap.add_argument("method")
    ap.add_argument("url")
    ap.add_argument("-H", action="append", default=[])
    ap.add_argument("--data")
    a = ap.parse_args(argv)
    headers = dict(h.split(": ", 1) for h in a.H)
    req = urllib.request.Request(a.url, method=a.method, data=a.data.encode() if a.data is not None else None, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            out = {"status": r.status, "headers": dict(r.headers), "body": r.read().decode(errors="replace")}
    except urllib.error.HTTPError as e:
        out = {"status": e.code, "headers": dict(e.headers), "body": e.read().decode(errors="replace")}
    print(json.dumps(out))
    return 0
