//! `cer-cloud-emulator`: a local, faithful emulator of the cloud provider APIs the CER capture
//! plane uses, for tests and the four-site lab. AWS is implemented (EC2 query API subset and
//! IMDSv2); Azure ARM NICs and OCI privateIps are not yet.
//!
//! # State model
//!
//! Cloud-agnostic ([`state`]): subnets (id, CIDR, VPC, availability zone) and NICs (id, provider,
//! instance, subnet, MAC, device index, primary IP, ordered secondary IPs, version). A private IP
//! is held by at most one NIC; the per-NIC `version` is bumped by every change and gives the etag.
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
//! imds_instance = "i-0a"        # instance served at /latest on the main listener (default: first NIC's)
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
//! The file is checked: unique ids, known subnets, addresses inside their subnet, no address
//! held twice.
//!
//! # Control API (JSON, main listener)
//!
//! | request | effect |
//! |---|---|
//! | `GET /_emulator/holders[?ip=A][&provider=P]` | `{"generation": n, "holders": [{"ip", "provider", "nic", "instance", "subnet", "mac", "primary"}], "pending": [{"seq", "op": "assign"\|"unassign", "nic", "ips", "accepted_unix_ms", "visible_in_ms"}]}` from the visible view; `generation` changes whenever the visible view does |
//! | `GET /_emulator/state` | region, move delay, subnets, `nics` (visible), `target_nics`, `pending`, `faults` |
//! | `POST /_emulator/faults` | body: one rule or an array of rules (below); answers the active rules |
//! | `GET /_emulator/faults` | the active rules |
//! | `DELETE /_emulator/faults` | removes every rule |
//! | `POST /_emulator/reset` | back to the seed state, no faults, no IMDS tokens; a JSON seed in the body replaces the seed |
//! | `POST /_emulator/config` | `{"move_delay_ms": n}` for changes accepted from now on |
//!
//! Errors are `{"error": "..."}` with status 400, 404 or 405.
//!
//! A fault rule:
//!
//! ```json
//! {"provider": "aws", "action": "AssignPrivateIpAddresses", "kind": "throttle", "count": 3}
//! ```
//!
//! - `provider`: `aws` (EC2 API), `imds` (then `action` is the request path) or `*` (default).
//! - `action`: API action name; absent or `*` matches every action.
//! - `kind`: `error` (AWS: HTTP 500 `InternalError`; IMDS: 500), `throttle` (AWS: HTTP 503
//!   `RequestLimitExceeded`; IMDS: 429), `delay` (wait `delay_ms`, then serve normally),
//!   `timeout` (hold the connection `delay_ms`, default one hour, then close it without an
//!   answer; with `"apply": true` the call is executed first, so the client cannot know whether
//!   it happened).
//! - `count`: how many matching calls the rule affects (default 1). Rules are consumed in the
//!   order they were added; `error` and `throttle` also honour `delay_ms` before answering.
//!
//! # AWS EC2 query API ([`aws`], main listener, any path)
//!
//! Form-encoded `POST` (or `GET` with a query string) with `Action` and `Version`; answers XML in
//! the `http://ec2.amazonaws.com/doc/2016-11-15/` namespace with a `requestId`, errors as EC2's
//! `<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>`.
//! SigV4 signatures are accepted but not verified (a present `Authorization` header must be well
//! formed, else `IncompleteSignature`).
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
//! - `DryRun=true` answers `DryRunOperation` (412).
//!
//! Errors: `MissingAction`, `InvalidAction`, `MissingParameter`, `InvalidParameterValue` (bad
//! address, address outside the subnet, unassigning a primary or an address the ENI does not
//! hold), `InvalidParameterCombination`, `InvalidNetworkInterfaceId.Malformed`,
//! `InvalidNetworkInterfaceID.NotFound`, `PrivateIpAddressInUse`, `UnknownParameter` (bad filter
//! keys) — all 400; `RequestLimitExceeded` (503) and `InternalError` (500) from faults.
//!
//! # IMDSv2 ([`imds`])
//!
//! Served under `/latest` on the main listener (for the seed's `imds_instance`) and on every
//! `--imds ADDR=INSTANCE` listener (for that instance). `PUT /latest/api/token` with
//! `X-aws-ec2-metadata-token-ttl-seconds` (1-21600; else 400; `X-Forwarded-For` -> 403) returns a
//! token; `GET /latest/meta-data/...` needs a live `X-aws-ec2-metadata-token` (else 401):
//! `instance-id`, `mac`, `local-ipv4`, `placement/region`, `placement/availability-zone`,
//! `network/interfaces/macs/` and per MAC `interface-id`, `local-ipv4s`, `device-number`,
//! `subnet-id`, `subnet-ipv4-cidr-block`, `vpc-id`, `mac`. Values come from the visible view.

pub mod aws;
pub mod azure;
pub mod control;
pub mod faults;
pub mod imds;
pub mod server;
pub mod state;

pub use server::{start, Emulator, Running};
pub use state::Seed;
