"""The three emulated providers' APIs as the cloud's operator uses them: HTTP requests from inside
a site's fabric namespace over one `_relay` helper (`ProviderRelay`), OCI requests signed with the
site's API key, and giving the workload's NICs secondary IPs (`assign_to_workload`), as many per
call as the provider's API takes and within its NIC quotas and rate limits.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import IO, Any
from urllib.parse import urlencode

from .messages import LabError, die
from .oci_sign import http_date, key_fingerprint, sign
from .topology import API_ADDR, LAB_SCRIPT, NIC_ROOM, OCI_TENANCY, OCI_USER, PROVIDER, PY, Lab

# (status, headers, body) of one HTTP answer.
Answer = tuple[int, dict[str, str], str]


class ProviderRelay:
    """A `_relay` helper in a cloud site's fabric namespace: requests to its emulator as JSON lines
    over pipes, one at a time (one process for any number of requests)."""

    def __init__(self, proc: subprocess.Popen[str], site: str) -> None:
        self.proc = proc
        self.site = site
        self.lock = threading.Lock()

    @classmethod
    def start(cls, lab: Lab, site: str, stderr: IO[Any] | int | None = None) -> ProviderRelay:
        p = subprocess.Popen(
            ["ip", "netns", "exec", lab.fab_ns(site), PY, str(LAB_SCRIPT), "_relay"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr if stderr is not None else subprocess.DEVNULL,
            start_new_session=True,
            text=True,
        )
        return cls(p, site)

    def request(self, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None) -> Answer:
        """One request; LabError when the relay ends or the request gets no HTTP answer."""
        with self.lock:
            assert self.proc.stdin is not None and self.proc.stdout is not None  # started with pipes
            try:
                self.proc.stdin.write(json.dumps({"method": method, "path": path, "body": body, "headers": headers or {}}) + "\n")
                self.proc.stdin.flush()
            except OSError as e:
                raise LabError(f"emulator relay for {self.site} ended ({e})") from e
            line = self.proc.stdout.readline()
        if not line:
            raise LabError(f"emulator relay for {self.site} ended")
        v = json.loads(line)
        if v.get("error"):
            raise LabError(f"{self.site} emulator {method} {path}: {v['error']}")
        return v["status"], v.get("headers", {}), v["body"]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> ProviderRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def helper_relay(argv: list[str]) -> int:
    """`scripts/lab _relay` (inside a fabric namespace): serves JSON-line HTTP requests
    ({method, path, body, headers}) to the emulator at API_ADDR; answers {status, headers, body}
    or {error}."""
    del argv
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        try:
            r = json.loads(line)
            body = r.get("body")
            headers = dict(r.get("headers") or {})
            if body is not None and not any(k.lower() == "content-type" for k in headers):
                headers["content-type"] = "application/json"
            req = urllib.request.Request(
                f"http://{API_ADDR}" + r["path"],
                method=r["method"],
                data=body.encode() if body is not None else None,
                headers=headers,
            )
            try:
                with urllib.request.urlopen(req, timeout=15) as resp:
                    out = {"status": resp.status, "headers": dict(resp.headers), "body": resp.read().decode(errors="replace")}
            except urllib.error.HTTPError as e:
                out = {"status": e.code, "headers": dict(e.headers), "body": e.read().decode(errors="replace")}
        except Exception as e:  # noqa: BLE001 - reported to the caller
            out = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    return 0


def oci_headers(lab: Lab, method: str, path: str, body: str | None) -> dict[str, str]:
    """The headers of an OCI request signed now with the lab's API key (without `host`, which
    the HTTP client sends itself)."""
    key = lab.f("oci-api-key.pem")
    key_id = f"{OCI_TENANCY}/{OCI_USER}/{key_fingerprint(key)}"
    h = sign(method, path, API_ADDR, http_date(datetime.datetime.now(datetime.UTC)), body, key_id, key)
    del h["host"]
    return h


def holders(relay: ProviderRelay) -> dict[str, str]:
    """What the provider says holds each secondary address: ip -> NIC id."""
    st, _, body = relay.request("GET", "/_emulator/holders")
    if st != 200:
        raise LabError(f"{relay.site} holders: {st} {body[:200]}")
    return {h["ip"]: h["nic"] for h in json.loads(body)["holders"] if not h.get("primary")}


def throttle_wait(st: int, hdr: dict[str, str], tries: int) -> float | None:
    """How long to wait before retrying an answer the provider throttled (None: not throttled)."""
    if st not in (429, 503):
        return None
    ra = next((v for k, v in hdr.items() if k.lower() == "retry-after"), None)
    try:
        return min(float(ra), 10.0) if ra else min(0.2 * 2**tries, 5.0)
    except ValueError:
        return 1.0


def assign_to_workload(lab: Lab, site: str, ips: list[str], relay: ProviderRelay | None = None, deadline_s: float = 45) -> None:
    """As the cloud's operator would: give the workload's NICs the secondary IPs (provider API),
    filling each NIC up to its quota, as many addresses per call as the API takes (AWS: one
    AssignPrivateIpAddresses per ENI; Azure: one PUT per NIC; OCI: one call per address), waiting
    out throttles. Dies when it cannot within deadline_s."""
    if not ips:
        return
    own = relay is None
    r = relay or ProviderRelay.start(lab, site)
    try:
        _assign(lab, site, list(ips), r, time.time() + deadline_s)
    finally:
        if own:
            r.close()


def provider_assign_to_workload(lab: Lab, site: str, ip: str) -> None:
    """`assign_to_workload` of one address."""
    assign_to_workload(lab, site, [ip])


def _assign(lab: Lab, site: str, ips: list[str], r: ProviderRelay, end: float) -> None:
    nics = lab.wl_nics(site)
    last = ""
    tries = 0
    sent: dict[str, tuple[str, float]] = {}  # ip -> (NIC, when) of an accepted call not yet visible
    while True:
        wait = 1.0
        try:
            h = holders(r)
        except LabError as e:
            last = str(e)
        else:
            now = time.time()
            for ip in [ip for ip, (nic, t) in sent.items() if h.get(ip) == nic or now - t > 5]:
                del sent[ip]  # visible, or not after 5 s: planned again
            pending = [ip for ip in ips if h.get(ip) not in nics and ip not in sent]
            if not pending and not sent:
                return
            wait = 0.2 if sent else 0.0
            for nic in nics:
                room = NIC_ROOM[site] - sum(1 for n in h.values() if n == nic) - sum(1 for n, _ in sent.values() if n == nic)
                chunk, pending = pending[: max(room, 0)], pending[max(room, 0) :]
                if not chunk:
                    continue
                try:
                    st, hdr, body = _assign_call(lab, site, nic, chunk, r)
                except LabError as e:
                    st, hdr, body = 0, {}, str(e)
                if st in (200, 201):
                    sent.update({ip: (nic, time.time()) for ip in chunk})
                    continue
                last = f"{st} {body}"
                w = throttle_wait(st, hdr, tries)
                wait = max(wait, w if w is not None else 1.0)
            if pending:
                last = f"the workload NICs are full: {len(pending)} /32s left"
                wait = max(wait, 1.0)
            tries = tries + 1 if wait >= 1.0 else 0
        if time.time() + wait > end:
            die(f"{site}: could not assign every /32 to the workload NICs in time: {last[:300]}")
        time.sleep(wait)


def _assign_call(lab: Lab, site: str, nic: str, ips: list[str], r: ProviderRelay) -> Answer:
    """One provider call (OCI: one per address, stopping at the first refusal) giving NIC the IPs."""
    p = PROVIDER[site]
    if site == "aws":
        form = {"Action": "AssignPrivateIpAddresses", "Version": "2016-11-15", "NetworkInterfaceId": nic, "AllowReassignment": "true"}
        form.update({f"PrivateIpAddress.{i + 1}": ip for i, ip in enumerate(ips)})
        return r.request("POST", "/", urlencode(form), {"content-type": "application/x-www-form-urlencoded"})
    if site == "azure":
        path = nic + "?api-version=2023-09-01"
        auth = {"authorization": "Bearer cer-lab"}
        st, hdr, body = r.request("GET", path, headers=auth)
        if st != 200:
            return st, hdr, body
        doc = json.loads(body)
        cfgs = doc["properties"]["ipConfigurations"]
        have = {c["properties"].get("privateIPAddress") for c in cfgs}
        for ip in ips:
            if ip not in have:
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
        if doc.get("etag"):
            h["if-match"] = doc["etag"]
        return r.request("PUT", path, json.dumps(doc), h)
    ans: Answer = (200, {}, "")
    for ip in ips:
        q = f"/20160918/privateIps?ipAddress={ip}&subnetId={p['subnet']}"
        st, hdr, body = r.request("GET", q, headers=oci_headers(lab, "GET", q, None))
        if st != 200:
            return st, hdr, body
        items = json.loads(body)
        if items and items[0].get("vnicId") == nic:
            continue
        if items:
            path, b, method = f"/20160918/privateIps/{items[0]['id']}", json.dumps({"vnicId": nic}), "PUT"
        else:
            path, b, method = "/20160918/privateIps", json.dumps({"vnicId": nic, "ipAddress": ip}), "POST"
        ans = r.request(method, path, b, oci_headers(lab, method, path, b))
        if ans[0] not in (200, 201):
            return ans
    return ans
