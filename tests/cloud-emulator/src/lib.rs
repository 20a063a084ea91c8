//! `cer-cloud-emulator`: a local, faithful emulator of the cloud provider APIs the CER capture
//! plane uses, for tests and the four-site lab: AWS (EC2 query API subset, IMDSv2), Azure (ARM
//! network interfaces with long-running operations, managed identity token) and OCI
//! (`privateIps`). All listeners serve plain HTTP; bind them to loopback (the default).
//! Each provider's limits are enforced as the real one enforces them: addresses per NIC
//! ([`instance_types`] for AWS) and API rate limits ([`limits`]); [`stats`] counts every call.
//!
//! # State model
//!
//! Cloud-agnostic ([`state`]): subnets (id, CIDR, VPC, availability zone) and NICs (id, provider,
//! instance, subnet, MAC, device index, primary IP, ordered secondary IPs, version). A private IP
//! is held by at most one NIC per *network* (`provider/vpc`: a VPC, VNet or VCN), so the same /32
//! can be captured at several sites at once, one holder per site; the per-NIC `version` is
//! bumped by every change and gives the etag.
//!
//! Changes are **asynchronous**, as in the real fabric: a request is validated against, and
//! applied at once to, the *target* view; the *visible* view (what `DescribeNetworkInterfaces`,
//! IMDS and the holder API report) receives each accepted change, in order, `move_delay_ms` after
//! it was accepted (default 500 ms). The lab's fabric should therefore steer packets by the holder
//! API: packets follow the capture only once the provider would really deliver them.
//!
//! # Seed file (`--state FILE`)
//!
//! TOML, or JSON when the name ends in `.json`:
//!
//! ```toml
//! region = "us-east-1"          # default
//! move_delay_ms = 500           # default
//! imds_instance = "i-0a"        # instance served at /latest on the main listener to callers it
//!                               # cannot map (default: first NIC's)
//! imds_clients = { "169.254.169.11" = "i-0b" }   # caller address -> instance (see IMDSv2)
//! clock_offset_secs = 0         # the emulator's clock is this far ahead of the host's
//!                               # (negative: behind; at most one year): see *Clock* below
//!
//! [[subnets]]
//! id = "subnet-0a"
//! cidr = "10.0.1.0/24"
//! vpc = "vpc-0a"                # default "vpc-emulator"
//! availability_zone = "us-east-1a"   # default: region + "a"
//!
//! [[nics]]
//! id = "eni-0a"
//! provider = "aws"              # default
//! instance = "i-0a"             # absent: an unattached NIC
//! subnet = "subnet-0a"
//! primary_ip = "10.0.1.10"
//! secondary_ips = ["10.0.1.100"]
//! mac = "02:00:00:00:00:0a"     # default: derived from the id
//! device_index = 0              # default: order among the instance's NICs
//! ```
//!
//! Quotas (see *Quotas and rate limits* below):
//!
//! ```toml
//! instance_types = { "i-0a" = "c5.4xlarge" }   # AWS instance id -> EC2 instance type
//! default_instance_type = "c5.4xlarge"          # default; other instances, unattached ENIs
//! azure_max_ip_configs = 256                    # default
//! oci_max_secondary_ips = 64                    # default
//!
//! [limits]                      # every key optional; these are the defaults
//! enabled = true                # false: no bucket meters anything
//! aws_assign = { capacity = 100, refill_per_sec = 5 }
//! aws_unassign = { capacity = 100, refill_per_sec = 5 }
//! aws_describe = { capacity = 100, refill_per_sec = 20 }
//! aws_describe_unfiltered = { capacity = 50, refill_per_sec = 10 }
//! azure_writes = { capacity = 200, refill_per_sec = 10 }
//! azure_deletes = { capacity = 200, refill_per_sec = 10 }
//! azure_reads = { capacity = 250, refill_per_sec = 25 }
//! oci_mutations = { capacity = 50, refill_per_sec = 10 }
//! oci_reads = { capacity = 100, refill_per_sec = 20 }
//! ```
//!
//! The file is checked: unique ids, known subnets, addresses inside their subnet, no address
//! held twice, known instance types (`instance_types` must name instances an AWS NIC is
//! attached to), no instance with more ENIs than its type allows and no NIC over its
//! provider's address limit, refill rates >= 0. `provider` selects which API sees a NIC: `aws` (ids `eni-...`), `azure` (the
//! ARM resource id `/subscriptions/S/resourceGroups/G/providers/Microsoft.Network/networkInterfaces/N`
//! as id, ARM subnet ids, `instance` = VM resource id) or `oci` (VNIC and subnet OCIDs).
//! `azure_location` (default `westeurope`) is reported by Azure NICs; `azure_list_page_size`
//! (default 50) is the page size of Azure NIC lists.
//!
//! OCI signatures (optional; without them only the `Authorization` header's shape is checked):
//!
//! ```toml
//! [oci_api_keys]                # keyId -> PEM public key (SPKI or PKCS#1)
//! "ocid1.tenancy.oc1..t/ocid1.user.oc1..u/11:22:..." = "-----BEGIN PUBLIC KEY-----\n..."
//!
//! [oci_instance_principal]      # served at /opc/v2/identity/*.pem, accepted by POST /v1/x509
//! tenancy = "ocid1.tenancy.oc1..t"   # the leaf certificate's OU=opc-tenant:...
//! cert_pem = "..."              # leaf certificate
//! key_pem = "..."               # its private key (PKCS#1 or PKCS#8)
//! intermediate_pem = "..."
//! token_ttl_secs = 1200         # default
//! ```
//!
//! # Control API (JSON, main listener)
//!
//! | request | effect |
//! |---|---|
//! | `GET /_emulator/holders[?ip=A][&provider=P][&network=N]` | `{"generation": n, "holders": [{"ip", "provider", "network", "nic", "instance", "subnet", "mac", "primary", "attached"}], "pending": [{"seq", "op": "assign"\|"unassign", "nic", "ips", "accepted_unix_ms", "visible_in_ms"}]}` from the visible view; `generation` changes whenever the visible view does |
//! | `GET /_emulator/holders?since=G&wait_ms=N` | long poll: answers (as above) once `generation` exceeds `G`, or after `N` ms (at most 60000) |
//! | `GET /_emulator/journal[?since=SEQ]` | `{"entries": [{"seq", "op", "nic", "ips"\|"secondaries", "accepted_unix_ms", "request": {"client", "method", "path", "received_unix_ms"}}], "dropped": n}`: every accepted change (mutation) after `SEQ`, oldest first, with the client address and request that caused it (the last 100000 are kept; `dropped` counts older ones) |
//! | `GET /_emulator/state` | region, move delay, `imds_instance`, `imds_clients`, subnets, `nics` (visible), `target_nics`, `pending`, `faults`, `default_instance_type`, `instance_types`, `azure_max_ip_configs`, `oci_max_secondary_ips`, `limits` |
//! | `POST /_emulator/faults` | body: one rule or an array of rules (below); answers the active rules |
//! | `GET /_emulator/faults` | the active rules |
//! | `DELETE /_emulator/faults` | removes every rule |
//! | `POST /_emulator/reset` | back to the seed state and the seed's limits (full buckets), no faults, no IMDS tokens, call statistics zeroed; a JSON seed in the body replaces the seed |
//! | `POST /_emulator/config` | `{"move_delay_ms": n, "limits": {...}, "clock_offset_secs": s}`, each optional: the move delay for changes accepted from now on; `limits` (the seed section's shape, absent keys take their defaults) replaces the rate limits, every bucket full; `clock_offset_secs` sets the clock offset (see *Clock*; a reset restores the seed's). Answers `{"move_delay_ms", "limits", "clock_offset_secs"}` |
//! | `GET /_emulator/stats` | `{"calls": [{"provider": "aws"\|"azure"\|"oci", "action", "served", "throttled", "failed"}], "since_unix_ms": n}`: every provider API call since `since_unix_ms` (start, reset or `DELETE`), by provider and action (`(unknown)` for a missing or unserved EC2 action): `served` answered 2xx, `throttled` refused by a rate limit or a `throttle` fault, `failed` any other error or a `timeout` fault. IMDS, identity tokens and the control API are not counted |
//! | `DELETE /_emulator/stats` | zeroes the statistics; answers them |
//! | `POST /_emulator/nics/detach` | `{"id": NIC}`: the NIC is detached from its instance, at once (an operator's console action: no journal entry, `generation` changes). AWS and Azure keep it with its addresses, unattached: `DescribeNetworkInterfaces` reports it `available` without `attachment` (filter `attachment.instance-id` no longer matches it), Azure without `properties.virtualMachine`, the holder view with `"instance": null, "attached": false` (its addresses reach no instance: the fabric should not deliver them). The primary NIC of an AWS or Azure instance (device index 0) cannot be detached (400, as at those providers). OCI deletes a secondary VNIC when it is detached: an OCI VNIC is deleted as by `nics/delete` (`{"detached", "deleted": true}`). Answers `{"detached", "instance"}`; not attached: 400; unknown: 404 |
//! | `POST /_emulator/nics/attach` | `{"id": NIC, "instance": I}` (`instance` optional: the one it was detached from): attaches it again, at once; already attached there: no-op; attached elsewhere: 400. Answers `{"attached", "instance"}` |
//! | `POST /_emulator/nics/delete` | `{"id": NIC}`: the NIC is deleted (its VM terminated): every API refuses it at once (AWS `InvalidNetworkInterfaceID.NotFound`, Azure 404 `ResourceNotFound`, OCI 404 `NotAuthorizedOrNotFound`), its addresses are free, and it leaves the visible view after the move delay; unknown: 404 |
//!
//! Errors are `{"error": "..."}` with status 400, 404 or 405.
//!
//! A fault rule:
//!
//! ```json
//! {"provider": "aws", "action": "AssignPrivateIpAddresses", "kind": "throttle", "count": 3}
//! ```
//!
//! - `provider`: `aws` (EC2 API), `azure`, `oci`, `imds` (then `action` is the request path) or
//!   `*` (default). Azure actions: `GetNetworkInterface`, `PutNetworkInterface`,
//!   `DeleteNetworkInterface` (not served: 405), `GetOperation`, `GetToken`,
//!   `ListNetworkInterfaces`; OCI actions: `ListPrivateIps`, `GetPrivateIp`,
//!   `UpdatePrivateIp`, `CreatePrivateIp`, `DeletePrivateIp`, `GetIdentityDocument`
//!   (`/opc/v2/identity/*`), `X509Federation` (`/v1/x509`).
//! - `action`: API action name; absent or `*` matches every action.
//! - `kind`: `error` (AWS: HTTP 500 `InternalError`; Azure: 500 `InternalServerError`; OCI:
//!   500 `InternalServerError`; IMDS: 500), `throttle` (AWS: HTTP 503 `RequestLimitExceeded`;
//!   Azure: 429 `RetryableError` with `Retry-After`; OCI: 429 `TooManyRequests`; IMDS: 429),
//!   `denied` (AWS: HTTP 403 `UnauthorizedOperation`; Azure: 403 `AuthorizationFailed`; OCI: 404
//!   `NotAuthorizedOrNotFound`, OCI's answer for both "not allowed" and "does not exist"; IMDS:
//!   403), `delay` (wait `delay_ms`, then serve normally),
//!   `timeout` (hold the connection `delay_ms`, default one hour, then close it without an
//!   answer; with `"apply": true` the call is executed first, so the client cannot know whether
//!   it happened).
//! - `count`: how many matching calls the rule affects (default 1). Rules are consumed in the
//!   order they were added; `error` and `throttle` also honour `delay_ms` before answering.
//!
//! # Quotas and rate limits
//!
//! **Addresses per NIC.** A call that would leave a NIC with more addresses than its limit fails
//! as a whole and changes nothing (no journal entry):
//!
//! | provider | limit (the primary included) | error |
//! |---|---|---|
//! | AWS | `Ipv4AddressesPerInterface` of the instance's type ([`instance_types`]: 14 common types, AWS's figures, e.g. t3.micro 2, m5.large 10, c5.4xlarge 30, c5.metal 50); `instance_types` maps instances to types, others (and unattached ENIs, the emulator's choice) are `default_instance_type`, c5.4xlarge by the emulator's choice. The seed may not attach more ENIs to an instance than `MaximumNetworkInterfaces` | 400 `PrivateIpAddressLimitExceeded`, "Number of private addresses will exceed limit." (AWS's code and message) |
//! | Azure | `azure_max_ip_configs` ipConfigurations (default 256, Azure's documented private addresses per NIC) | 400 `IpConfigurationCountLimitReached` (the emulator's choice: ARM's code for this case is not documented; named like the Network provider's `...CountLimitReached` codes) |
//! | OCI | 1 + `oci_max_secondary_ips` (default 64 secondary private IPs per VNIC, OCI's figure), for `CreatePrivateIp` and `UpdatePrivateIp` onto the VNIC | 400 `LimitExceeded` (OCI's documented code for an Oracle-defined limit) |
//!
//! **API rate limits.** Token buckets (`[limits]`): each provider API call takes one token from
//! its bucket before anything else is checked; a bucket refills continuously at
//! `refill_per_sec` up to `capacity`; an empty bucket answers the provider's throttle and the
//! call is **not executed**. `capacity = 0` turns a bucket off, `refill_per_sec = 0` makes it a
//! budget that never refills, `enabled = false` turns every bucket off. IMDS, identity tokens
//! (`/metadata/...`, `/opc/...`, `/v1/x509`) and the control API are never metered.
//!
//! | bucket | calls | default | source |
//! |---|---|---|---|
//! | `aws_assign` | `AssignPrivateIpAddresses` (account and region: the whole emulator) | 100, 5/s | AWS (an "uncategorized action" with its own bucket) |
//! | `aws_unassign` | `UnassignPrivateIpAddresses` | 100, 5/s | AWS (its own bucket: AWS meters each action separately, so assign and unassign do not share one) |
//! | `aws_describe` | `DescribeNetworkInterfaces` with ids, a filter, `MaxResults` or `NextToken`; `DescribeInstanceTypes` (one bucket each) | 100, 20/s | AWS ("non-mutating actions") |
//! | `aws_describe_unfiltered` | `DescribeNetworkInterfaces` with none of those | 50, 10/s | AWS ("unfiltered and unpaginated non-mutating actions"; counting ids as a filter is the emulator's reading) |
//! | `azure_writes` | ARM PUT / POST / PATCH, per subscription | 200, 10/s | Azure (2024 token-bucket limits) |
//! | `azure_deletes` | ARM DELETE, per subscription | 200, 10/s | Azure |
//! | `azure_reads` | ARM GET, per subscription (operation polls included) | 250, 25/s | Azure |
//! | `oci_mutations` | `privateIps` PUT / POST / DELETE (the tenancy: the whole emulator) | 50, 10/s | the emulator's choice (OCI publishes no figures) |
//! | `oci_reads` | `privateIps` GET | 100, 20/s | the emulator's choice |
//!
//! Throttle answers: AWS HTTP 503 `RequestLimitExceeded` "Request limit exceeded."; Azure 429
//! `SubscriptionRequestsThrottled` "Number of 'write' requests for subscription 'S' actor 'A'
//! exceeded. Please try again after 'N' seconds after additional tokens are available. ..."
//! with `Retry-After: N` (seconds until a token, rounded up, at least 1, at most 3600); OCI 429
//! `TooManyRequests` "User-rate limit exceeded.". Every metered ARM answer carries
//! `x-ms-ratelimit-remaining-subscription-reads` (GET), `-writes` or `-deletes`: the whole
//! tokens left in that bucket (0 on a throttle; absent while the bucket is off). The
//! Network provider's own limits (1000 writes and 10000 reads per 5 minutes) are not modelled.
//!
//! # AWS EC2 query API ([`aws`], main listener, any path)
//!
//! Form-encoded `POST` (or `GET` with a query string) with `Action` and `Version`; answers XML in
//! the `http://ec2.amazonaws.com/doc/2016-11-15/` namespace with a `requestId`, errors as EC2's
//! `<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>`.
//! SigV4 signatures are not verified, but a present `Authorization` header must be well formed
//! and dated (`X-Amz-Date`, `YYYYMMDDTHHMMSSZ`, or else `Date`), else 400 `IncompleteSignature`;
//! a date more than 15 minutes from the emulator's clock (either way) is 400 `RequestExpired`
//! "Request has expired." (EC2's answer to a skewed client clock; see *Clock*). Unsigned
//! requests are served as before.
//!
//! - `AssignPrivateIpAddresses`: `NetworkInterfaceId`, `PrivateIpAddress.N` or
//!   `SecondaryPrivateIpAddressCount`, `AllowReassignment`. An address held by another ENI is
//!   `PrivateIpAddressInUse` unless `AllowReassignment=true`, which moves it (asynchronously).
//!   Another ENI's primary address never moves.
//! - `UnassignPrivateIpAddresses`: `NetworkInterfaceId`, `PrivateIpAddress.N`.
//! - `DescribeNetworkInterfaces`: `NetworkInterfaceId.N`, `Filter.N.Name` / `Filter.N.Value.M`
//!   (`network-interface-id`, `addresses.private-ip-address`, `addresses.primary`,
//!   `private-ip-address`, `attachment.instance-id`, `attachment.device-index`, `subnet-id`,
//!   `vpc-id`, `mac-address`, `availability-zone`, `status`, `owner-id`; `*` and `?`
//!   wildcards), `MaxResults` / `NextToken`.
//! - `DescribeInstanceTypes`: `InstanceType.N` (absent: every type [`instance_types`] knows),
//!   filter `instance-type` (wildcards; other filters are `InvalidParameterValue`),
//!   `MaxResults` (5-100) / `NextToken`; items carry `instanceType`, `vCpuInfo`, `memoryInfo`,
//!   `networkInfo` (`maximumNetworkInterfaces`, `ipv4AddressesPerInterface`,
//!   `ipv6AddressesPerInterface`, `ipv6Supported`, `networkCards`, ...) as EC2 writes them.
//!   Unknown types: 400 `InvalidInstanceType`.
//! - Several `PrivateIpAddress.N` in one assign or unassign are validated together and
//!   accepted as one change (one journal entry) or refused as a whole.
//! - `DryRun=true` answers `DryRunOperation` (412).
//!
//! Errors: `MissingAction`, `InvalidAction`, `MissingParameter`, `InvalidParameterValue` (bad
//! address, address outside the subnet, unassigning a primary or an address the ENI does not
//! hold), `InvalidParameterCombination`, `InvalidNetworkInterfaceId.Malformed`,
//! `InvalidNetworkInterfaceID.NotFound`, `PrivateIpAddressInUse`, `PrivateIpAddressLimitExceeded`,
//! `InvalidInstanceType`, `UnknownParameter` (bad filter keys) — all 400;
//! `RequestLimitExceeded` (503) from the rate limits and faults, `InternalError` (500) from
//! faults.
//!
//! # IMDSv2 ([`imds`])
//!
//! Served under `/latest` on the main listener and on every `--imds ADDR=INSTANCE` listener (for
//! that instance). The main listener answers the instance the request comes from, as a real IMDS
//! does: the one `imds_clients` names for the caller's source address, else the instance of the
//! NIC holding that address (primary first), else the seed's `imds_instance`. `imds_clients`
//! must name instances some NIC is attached to. `PUT /latest/api/token` with
//! `X-aws-ec2-metadata-token-ttl-seconds` (1-21600; else 400; `X-Forwarded-For` -> 403) returns a
//! token; `GET /latest/meta-data/...` needs a live `X-aws-ec2-metadata-token` (else 401):
//! `instance-id`, `instance-type` (from `instance_types` / `default_instance_type`), `mac`, `local-ipv4`, `placement/region`, `placement/availability-zone`,
//! `network/interfaces/macs/` and per MAC `interface-id`, `local-ipv4s`, `device-number`,
//! `subnet-id`, `subnet-ipv4-cidr-block`, `vpc-id`, `mac`. Values come from the visible view.

//! # Azure ([`azure`], main listener, paths `/subscriptions/...` and `/metadata/...`)
//!
//! Requests need `?api-version=` (else 400 `MissingApiVersionParameter`) and an
//! `Authorization: Bearer ...` header (any token; else 401 `AuthenticationFailed`); errors are
//! `{"error": {"code", "message", "details"}}`.
//!
//! - `GET /subscriptions/S[/resourceGroups/G]/providers/Microsoft.Network/networkInterfaces`:
//!   the NICs of the resource group (or subscription) as `{"value": [...], "nextLink": url}`,
//!   `azure_list_page_size` per page (`$skiptoken` in the `nextLink`; a bad one is 400).
//! - `GET <nic id>`: the NIC (`etag` header and field, `ipConfigurations` with name,
//!   `privateIPAddress`, `primary`, subnet; `provisioningState` `Updating` while a change is
//!   running, else `Succeeded`). Unknown: 404 `ResourceNotFound`.
//! - `PUT <nic id>`: the full NIC body; the secondary ipConfigurations are replaced by the body's
//!   (Static with `privateIPAddress`, or Dynamic: lowest free address). `If-Match` must match
//!   the etag (else 412 `PreconditionFailed`). A NIC keeps exactly one primary configuration
//!   whose address does not change (else 400 `InvalidRequestFormat`). An address held by another
//!   NIC, **including one whose release is still running**, is 400
//!   `PrivateIPAddressIsAllocated`; a second PUT while the NIC's operation runs is 429
//!   `RetryableErrorDueToAnotherOperation` (`Retry-After`). Other errors:
//!   `PrivateIPAddressInvalid`, `PrivateIPAddressMissing` (Static without an address),
//!   `PrivateIPAddressNotInSubnet`, `SubnetIsFull`, `IpConfigurationCountLimitReached` (more
//!   than `azure_max_ip_configs`). Several new configurations in one PUT are one change (one
//!   journal entry). A change answers
//!   200 with `provisioningState: Updating`, `Azure-AsyncOperation` and `Retry-After: 1`; an
//!   identical PUT answers `Succeeded` without an operation.
//! - `GET /subscriptions/S/providers/Microsoft.Network/locations/L/operations/ID`:
//!   `{"status": "InProgress"}` until the change is visible (`move_delay_ms`), then
//!   `{"status": "Succeeded"}`.
//! - `GET /metadata/identity/oauth2/token?api-version=...&resource=...` with `Metadata: true`:
//!   a managed identity token (`access_token`, `expires_on`, `token_type: Bearer`, ...).
//!
//! A move is the two steps the capture plane performs: PUT the old NIC without the
//! configuration, poll until `Succeeded`, then PUT the new NIC with it.
//!
//! # Clock
//!
//! The emulator's clock is the host's plus `clock_offset_secs` (seed, or at run time
//! `POST /_emulator/config`), so a test can play a client whose clock is off without touching the
//! host's. It is what every reply's `Date` header says (all listeners: a client measures its skew
//! from it, as real clients do), what the signature date checks compare with (AWS SigV4: 15
//! minutes, 400 `RequestExpired`; OCI: 5 minutes, 401 `NotAuthenticated` "date is more than 5
//! minutes off"), and the clock of the tokens it issues (OCI security tokens' `iat`/`exp`, Azure
//! managed identity `expires_on`/`not_before`). Azure requests carry a bearer token and no
//! client timestamp: ARM judges a token's expiry by the issuer's clock, so a client's skew only
//! matters for when it renews (a client should use the relative `expires_in`); the emulator
//! does not expire ARM tokens. Journal and statistics timestamps stay on the host's clock.
//!
//! # OCI ([`oci`], main listener, paths `/20160918/privateIps...`)
//!
//! Requests need an `Authorization: Signature version="1",keyId=...,algorithm="rsa-sha256",
//! headers=...,signature=...` header (else 401 `NotAuthenticated`). Without `oci_api_keys` and
//! `oci_instance_principal` in the seed only its shape is checked. With either, the signature is
//! verified (RSA-SHA256 over the listed headers; `(request-target)`, `host` and `date` must be
//! signed, and for POST / PUT also `x-content-sha256` (which must match the body),
//! `content-type` and `content-length`; the date may be at most 5 minutes off the emulator's
//! clock, see *Clock*): `keyId` is an
//! `oci_api_keys` entry, or `ST$<token>` for a security token this emulator issued (signed
//! with that token's session key); any other keyId is refused. Errors are
//! `{"code", "message"}` with `opc-request-id`. A private IP's OCID is derived from its subnet and
//! address, so it survives moves; its `etag` changes whenever it or its VNIC changes.
//!
//! - `GET /20160918/privateIps?ipAddress=A&subnetId=S` | `?subnetId=S` | `?vnicId=V`: list.
//! - `GET /20160918/privateIps/{id}`: one (with `etag`); unknown: 404 `NotAuthorizedOrNotFound`.
//! - `PUT /20160918/privateIps/{id}` `{"vnicId": V}`: moves a secondary private IP to another VNIC
//!   of the same subnet (the API answers the new VNIC at once; the holder view follows after
//!   `move_delay_ms`); `if-match` mismatch: 412 `NoEtagMatch`; primary or other subnet: 400
//!   `InvalidParameter`.
//! - `POST /20160918/privateIps` `{"vnicId": V, "ipAddress": A}` (address optional): create;
//!   held elsewhere or already on the VNIC: 409 `Conflict`; a VNIC with
//!   `oci_max_secondary_ips` secondaries (also as a move's target): 400 `LimitExceeded`.
//! - `DELETE /20160918/privateIps/{id}`: 204; a primary cannot be deleted (400).
//! - `GET /opc/v2/identity/{cert,key,intermediate}.pem` with `Authorization: Bearer Oracle`
//!   (else 401): the instance principal's PEM documents (404 when none is configured).
//! - `POST /v1/x509` `{"certificate": base64 DER leaf, "publicKey": base64 DER SPKI session key,
//!   ...}`, signed with the leaf key as `keyId="{tenancy}/fed-x509/{leaf SHA-1 fingerprint}"`:
//!   `{"token": JWT}` whose claims carry `tenant`, `exp` and the session key (`jwk`).

pub mod aws;
pub mod azure;
pub mod control;
pub mod faults;
pub mod imds;
pub mod instance_types;
pub mod limits;
pub mod oci;
pub mod server;
pub mod state;
pub mod stats;

pub use server::{start, Emulator, Running};
pub use state::Seed;
