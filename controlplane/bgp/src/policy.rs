//! Import/export routing policy: ordered terms of match conditions (prefix
//! ranges, communities) and actions (accept/reject, set attributes, prepend);
//! the first matching term decides, else the policy's default. Loads from TOML.

use crate::route::{Asn, Community, Ipv4Prefix, Ipv6Prefix, PathAttrs, Prefix};
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

/// Upper bound for `prepend.times`: longer prepends are operator error.
pub const MAX_PREPEND: u8 = 32;

/// A policy that could not be built, with where and what.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A field has a bad value.
    #[error("policy {policy:?}{}: {field} = {value}: {reason}", .term.as_ref().map(|t| format!(" {t}")).unwrap_or_default())]
    Invalid {
        policy: String,
        /// `term 2` or `term 2 "bogons"`; `None` for policy-level fields.
        term: Option<String>,
        field: &'static str,
        value: String,
        reason: String,
    },
    /// Two policies (or two terms of one policy) share a name.
    #[error("{what} {name:?} is defined more than once; names must be unique")]
    Duplicate { what: String, name: String },
}

/// What happens to a route no term matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DefaultAction {
    Accept,
    Reject,
}

/// A prefix with an accepted length range, FRR prefix-list style:
/// `10.0.0.0/8` (exactly /8), `10.0.0.0/8 le 24` (/8../24),
/// `10.0.0.0/8 ge 16` (/16../32), `10.0.0.0/8 ge 16 le 24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PrefixRange {
    prefix: Prefix,
    ge: u8,
    le: u8,
}

fn prefix_len(p: &Prefix) -> u8 {
    match p {
        Prefix::V4(p) => p.len(),
        Prefix::V6(p) => p.len,
    }
}

fn max_len(p: &Prefix) -> u8 {
    match p {
        Prefix::V4(_) => 32,
        Prefix::V6(_) => 128,
    }
}

/// Parses `A.B.C.D/LEN` or `X:X::X/LEN`, host bits must be zero.
pub fn parse_prefix(s: &str) -> Result<Prefix, String> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| "expected ADDRESS/LENGTH".to_string())?;
    let len: u8 = l
        .parse()
        .map_err(|_| format!("'{l}' is not a prefix length"))?;
    match a.parse::<IpAddr>() {
        Ok(IpAddr::V4(addr)) => Ipv4Prefix::new(addr, len)
            .map(Prefix::V4)
            .map_err(|e| e.to_string()),
        Ok(IpAddr::V6(addr)) => {
            if len > 128 {
                return Err(format!("IPv6 prefix length {len} is over 128"));
            }
            let p = Ipv6Prefix::new(addr, len);
            if p.addr != addr {
                return Err(format!("host bits are set; did you mean {p}?"));
            }
            Ok(Prefix::V6(p))
        }
        Err(_) => Err(format!("'{a}' is not an IPv4 or IPv6 address")),
    }
}

impl PrefixRange {
    /// Builds a range; requires `len(prefix) <= ge <= le <= max`.
    pub fn new(prefix: Prefix, ge: u8, le: u8) -> Result<Self, String> {
        let (len, max) = (prefix_len(&prefix), max_len(&prefix));
        if ge < len {
            return Err(format!("ge {ge} is shorter than the prefix length {len}"));
        }
        if le < ge {
            return Err(format!("le {le} is shorter than ge {ge}"));
        }
        if le > max {
            return Err(format!("le {le} is over the maximum length {max}"));
        }
        Ok(PrefixRange { prefix, ge, le })
    }

    /// An exact-length match of `prefix`.
    pub fn exact(prefix: Prefix) -> Self {
        let len = prefix_len(&prefix);
        PrefixRange {
            prefix,
            ge: len,
            le: len,
        }
    }

    /// Whether `p` lies inside this range's prefix with an accepted length.
    pub fn matches(&self, p: &Prefix) -> bool {
        let plen = prefix_len(p);
        if plen < self.ge || plen > self.le {
            return false;
        }
        match (&self.prefix, p) {
            (Prefix::V4(net), Prefix::V4(p)) => net.contains(p.addr()),
            (Prefix::V6(net), Prefix::V6(p)) => Ipv6Prefix::new(p.addr, net.len).addr == net.addr,
            _ => false,
        }
    }
}

impl fmt::Display for PrefixRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (len, max) = (prefix_len(&self.prefix), max_len(&self.prefix));
        write!(f, "{}", self.prefix)?;
        if self.ge != len {
            write!(f, " ge {}", self.ge)?;
        }
        if self.le != len && !(self.ge != len && self.le == max) {
            write!(f, " le {}", self.le)?;
        }
        Ok(())
    }
}

impl FromStr for PrefixRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut words = s.split_whitespace();
        let prefix = parse_prefix(words.next().ok_or("empty prefix range")?)?;
        let (len, max) = (prefix_len(&prefix), max_len(&prefix));
        let (mut ge, mut le) = (None, None);
        while let Some(kw) = words.next() {
            let slot = match kw {
                "ge" => &mut ge,
                "le" => &mut le,
                other => return Err(format!("unexpected '{other}' (expected 'ge N' or 'le N')")),
            };
            if slot.is_some() {
                return Err(format!("'{kw}' given twice"));
            }
            let v = words
                .next()
                .ok_or_else(|| format!("'{kw}' needs a length"))?;
            *slot = Some(
                v.parse::<u8>()
                    .map_err(|_| format!("'{kw} {v}': not a prefix length"))?,
            );
        }
        let (ge, le) = match (ge, le) {
            (None, None) => (len, len),
            (Some(g), None) => (g, max),
            (None, Some(l)) => (len, l),
            (Some(g), Some(l)) => (g, l),
        };
        PrefixRange::new(prefix, ge, le)
    }
}

/// Parses `ASN:VALUE` or a well-known name (`no-export`, `no-advertise`,
/// `no-export-subconfed`).
pub fn parse_community(s: &str) -> Result<Community, String> {
    match s {
        "no-export" => Ok(Community::NO_EXPORT),
        "no-advertise" => Ok(Community::NO_ADVERTISE),
        "no-export-subconfed" => Ok(Community::NO_EXPORT_SUBCONFED),
        _ => s.parse(),
    }
}

/// A community or a wildcard: `65000:100`, `65000:*`, `*:100`, `*:*`, or a
/// well-known name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommunityPattern {
    Exact(Community),
    /// `ASN:*`
    Asn(u16),
    /// `*:VALUE`
    Value(u16),
    /// `*:*`
    Any,
}

impl CommunityPattern {
    pub fn matches(&self, c: Community) -> bool {
        let (asn, value) = ((c.0 >> 16) as u16, (c.0 & 0xffff) as u16);
        match *self {
            CommunityPattern::Exact(x) => x == c,
            CommunityPattern::Asn(a) => a == asn,
            CommunityPattern::Value(v) => v == value,
            CommunityPattern::Any => true,
        }
    }
}

impl FromStr for CommunityPattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let half = |x: &str, what: &str| {
            x.parse::<u16>()
                .map_err(|_| format!("'{s}': {what} part must be 0..=65535 or *"))
        };
        match s.split_once(':') {
            Some(("*", "*")) => Ok(CommunityPattern::Any),
            Some(("*", v)) => Ok(CommunityPattern::Value(half(v, "value")?)),
            Some((a, "*")) => Ok(CommunityPattern::Asn(half(a, "ASN")?)),
            _ => parse_community(s).map(CommunityPattern::Exact),
        }
    }
}

impl fmt::Display for CommunityPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommunityPattern::Exact(c) => c.fmt(f),
            CommunityPattern::Asn(a) => write!(f, "{a}:*"),
            CommunityPattern::Value(v) => write!(f, "*:{v}"),
            CommunityPattern::Any => f.write_str("*:*"),
        }
    }
}

/// Match conditions of a term; all given conditions must hold (an empty
/// match matches every route).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Match {
    /// The prefix is in any of these ranges.
    pub prefix: Vec<PrefixRange>,
    /// The route carries at least one community matching any pattern.
    pub community_any: Vec<CommunityPattern>,
    /// Every pattern matches some community of the route.
    pub community_all: Vec<CommunityPattern>,
}

impl Match {
    pub fn matches(&self, prefix: &Prefix, attrs: &PathAttrs) -> bool {
        let has = |pat: &CommunityPattern| attrs.communities.iter().any(|&c| pat.matches(c));
        (self.prefix.is_empty() || self.prefix.iter().any(|r| r.matches(prefix)))
            && (self.community_any.is_empty() || self.community_any.iter().any(has))
            && self.community_all.iter().all(has)
    }
}

/// AS_PATH prepend: `asn` added `times` times in front.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prepend {
    pub asn: Asn,
    pub times: u8,
}

/// Attribute changes of an accepting term. Communities are removed first,
/// then added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Modify {
    pub set_local_pref: Option<u32>,
    pub set_med: Option<u32>,
    pub add_communities: Vec<Community>,
    pub remove_communities: Vec<CommunityPattern>,
    pub prepend: Option<Prepend>,
}

impl Modify {
    pub fn is_empty(&self) -> bool {
        *self == Modify::default()
    }

    /// Applies the changes to `attrs`.
    pub fn apply(&self, attrs: &mut PathAttrs) {
        if let Some(lp) = self.set_local_pref {
            attrs.local_pref = Some(lp);
        }
        if let Some(med) = self.set_med {
            attrs.med = Some(med);
        }
        if !self.remove_communities.is_empty() {
            attrs
                .communities
                .retain(|&c| !self.remove_communities.iter().any(|p| p.matches(c)));
        }
        for &c in &self.add_communities {
            if !attrs.communities.contains(&c) {
                attrs.communities.push(c);
            }
        }
        if let Some(p) = self.prepend {
            attrs.prepend_as(p.asn, usize::from(p.times));
        }
    }
}

/// What a matching term does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Reject,
    Accept(Modify),
}

/// One term: conditions and the action when they match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    /// The configured name, or `term N` (1-based).
    pub name: String,
    pub matches: Match,
    pub action: Action,
}

/// A named, validated policy. Deserializes from the TOML form (see the
/// module tests) with validation; build one in code with [`Policy::new`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "PolicyConfig")]
pub struct Policy {
    name: String,
    default: DefaultAction,
    terms: Vec<Term>,
}

impl Policy {
    pub fn new(name: impl Into<String>, default: DefaultAction, terms: Vec<Term>) -> Self {
        Policy {
            name: name.into(),
            default,
            terms,
        }
    }

    /// A policy with no terms: accepts everything unchanged.
    pub fn accept_all(name: impl Into<String>) -> Self {
        Policy::new(name, DefaultAction::Accept, Vec::new())
    }

    /// A policy with no terms: rejects everything.
    pub fn reject_all(name: impl Into<String>) -> Self {
        Policy::new(name, DefaultAction::Reject, Vec::new())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn default_action(&self) -> DefaultAction {
        self.default
    }

    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// Index of the first term matching the route, or `None` (the default
    /// applies). For `cerctl explain`.
    pub fn matching_term(&self, prefix: &Prefix, attrs: &PathAttrs) -> Option<usize> {
        self.terms
            .iter()
            .position(|t| t.matches.matches(prefix, attrs))
    }

    /// The route's attributes after policy, or `None` when rejected.
    pub fn apply(&self, prefix: &Prefix, attrs: &PathAttrs) -> Option<PathAttrs> {
        match self.matching_term(prefix, attrs) {
            None => (self.default == DefaultAction::Accept).then(|| attrs.clone()),
            Some(i) => match &self.terms[i].action {
                Action::Reject => None,
                Action::Accept(m) => {
                    let mut out = attrs.clone();
                    m.apply(&mut out);
                    Some(out)
                }
            },
        }
    }

    /// Like [`Policy::apply`], but returns the same `Arc` when the policy
    /// leaves the attributes unchanged, so the RIB keeps sharing them.
    pub fn apply_arc(&self, prefix: &Prefix, attrs: &Arc<PathAttrs>) -> Option<Arc<PathAttrs>> {
        let modify = match self.matching_term(prefix, attrs) {
            None if self.default == DefaultAction::Accept => return Some(Arc::clone(attrs)),
            None => return None,
            Some(i) => match &self.terms[i].action {
                Action::Reject => return None,
                Action::Accept(m) => m,
            },
        };
        if modify.is_empty() {
            return Some(Arc::clone(attrs));
        }
        let mut out = PathAttrs::clone(attrs);
        modify.apply(&mut out);
        if out == **attrs {
            Some(Arc::clone(attrs))
        } else {
            Some(Arc::new(out))
        }
    }
}

/// Several policies by name, e.g. one TOML file of `[[policy]]` tables.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "PolicySetConfig")]
pub struct PolicySet {
    policies: Vec<Policy>,
}

impl PolicySet {
    /// Builds a set; names must be unique.
    pub fn new(policies: Vec<Policy>) -> Result<Self, PolicyError> {
        let mut seen = HashSet::new();
        for p in &policies {
            if !seen.insert(p.name.as_str()) {
                return Err(PolicyError::Duplicate {
                    what: "policy".to_string(),
                    name: p.name.clone(),
                });
            }
        }
        Ok(PolicySet { policies })
    }

    pub fn get(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Policy> {
        self.policies.iter()
    }

    pub fn len(&self) -> usize {
        self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

// ---- configuration form (serde), validated into the types above ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicySetConfig {
    #[serde(default)]
    policy: Vec<Policy>,
}

impl TryFrom<PolicySetConfig> for PolicySet {
    type Error = PolicyError;
    fn try_from(c: PolicySetConfig) -> Result<Self, PolicyError> {
        PolicySet::new(c.policy)
    }
}

/// The TOML form of a policy.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyConfig {
    name: String,
    default: Option<String>,
    #[serde(default)]
    term: Vec<TermConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TermConfig {
    name: Option<String>,
    #[serde(rename = "match", default)]
    matches: MatchConfig,
    action: Option<ActionConfig>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MatchConfig {
    #[serde(default)]
    prefix: Vec<String>,
    #[serde(default)]
    community_any: Vec<String>,
    #[serde(default)]
    community_all: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionConfig {
    accept: Option<bool>,
    set_local_pref: Option<u32>,
    set_med: Option<u32>,
    #[serde(default)]
    add_communities: Vec<String>,
    #[serde(default)]
    remove_communities: Vec<String>,
    prepend: Option<PrependConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrependConfig {
    asn: Asn,
    #[serde(default = "one")]
    times: u8,
}

fn one() -> u8 {
    1
}

/// Builds errors for one policy/term location.
struct Where<'a> {
    policy: &'a str,
    term: Option<String>,
}

impl Where<'_> {
    fn err(
        &self,
        field: &'static str,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> PolicyError {
        PolicyError::Invalid {
            policy: self.policy.to_string(),
            term: self.term.clone(),
            field,
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    fn list<T>(
        &self,
        field: &'static str,
        items: &[String],
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, PolicyError> {
        items
            .iter()
            .map(|s| parse(s).map_err(|e| self.err(field, format!("{s:?}"), e)))
            .collect()
    }
}

impl TryFrom<PolicyConfig> for Policy {
    type Error = PolicyError;
    fn try_from(c: PolicyConfig) -> Result<Self, PolicyError> {
        let top = Where {
            policy: &c.name,
            term: None,
        };
        if c.name.trim().is_empty() || c.name.trim() != c.name {
            return Err(top.err(
                "name",
                format!("{:?}", c.name),
                "must be non-empty without surrounding spaces",
            ));
        }
        let default = match c.default.as_deref() {
            Some("accept") => DefaultAction::Accept,
            Some("reject") => DefaultAction::Reject,
            Some(other) => {
                return Err(top.err(
                    "default",
                    format!("{other:?}"),
                    "expected \"accept\" or \"reject\"",
                ))
            }
            None => {
                return Err(top.err(
                    "default",
                    "(missing)",
                    "required: \"accept\" or \"reject\" for routes no term matches",
                ))
            }
        };
        let mut names = HashSet::new();
        let mut terms = Vec::with_capacity(c.term.len());
        for (i, t) in c.term.into_iter().enumerate() {
            let n = i + 1;
            let label = match &t.name {
                Some(name) => format!("term {n} {name:?}"),
                None => format!("term {n}"),
            };
            let at = Where {
                policy: &c.name,
                term: Some(label),
            };
            if let Some(name) = &t.name {
                if name.trim().is_empty() {
                    return Err(at.err("name", format!("{name:?}"), "must not be empty"));
                }
                if !names.insert(name.clone()) {
                    return Err(PolicyError::Duplicate {
                        what: format!("policy {:?}: term", c.name),
                        name: name.clone(),
                    });
                }
            }
            terms.push(build_term(&at, t, n)?);
        }
        Ok(Policy {
            name: c.name,
            default,
            terms,
        })
    }
}

fn build_term(at: &Where<'_>, t: TermConfig, n: usize) -> Result<Term, PolicyError> {
    let matches = Match {
        prefix: at.list("match.prefix", &t.matches.prefix, PrefixRange::from_str)?,
        community_any: at.list(
            "match.community_any",
            &t.matches.community_any,
            CommunityPattern::from_str,
        )?,
        community_all: at.list(
            "match.community_all",
            &t.matches.community_all,
            CommunityPattern::from_str,
        )?,
    };
    let a = t.action.ok_or_else(|| {
        at.err(
            "action",
            "(missing)",
            "every term needs an action with accept = true or false",
        )
    })?;
    let accept = a.accept.ok_or_else(|| {
        at.err(
            "action.accept",
            "(missing)",
            "required: true (accept) or false (reject)",
        )
    })?;
    let prepend = match a.prepend {
        None => None,
        Some(p) => {
            if p.asn == 0 || p.asn == 23456 {
                return Err(at.err(
                    "action.prepend.asn",
                    p.asn,
                    "AS 0 and AS_TRANS (23456) cannot appear in an AS_PATH",
                ));
            }
            if p.times == 0 || p.times > MAX_PREPEND {
                return Err(at.err(
                    "action.prepend.times",
                    p.times,
                    format!("must be 1..={MAX_PREPEND}"),
                ));
            }
            Some(Prepend {
                asn: p.asn,
                times: p.times,
            })
        }
    };
    let modify = Modify {
        set_local_pref: a.set_local_pref,
        set_med: a.set_med,
        add_communities: at.list(
            "action.add_communities",
            &a.add_communities,
            parse_community,
        )?,
        remove_communities: at.list(
            "action.remove_communities",
            &a.remove_communities,
            CommunityPattern::from_str,
        )?,
        prepend,
    };
    let action = if accept {
        Action::Accept(modify)
    } else if modify.is_empty() {
        Action::Reject
    } else {
        return Err(at.err(
            "action.accept",
            false,
            "a rejecting term cannot also set attributes; remove the set/add/remove/prepend fields",
        ));
    };
    let name = t.name.unwrap_or_else(|| format!("term {n}"));
    Ok(Term {
        name,
        matches,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{AsSegment, AsSegmentKind, NextHop};
    use std::net::Ipv4Addr;

    fn p(s: &str) -> Prefix {
        parse_prefix(s).expect("test prefix")
    }

    fn c(s: &str) -> Community {
        parse_community(s).expect("test community")
    }

    fn attrs(comms: &[&str]) -> PathAttrs {
        let mut a = PathAttrs::local(NextHop::V4 {
            addr: Ipv4Addr::new(192, 0, 2, 1),
        });
        a.communities = comms.iter().map(|s| c(s)).collect();
        a
    }

    fn load(toml_text: &str) -> Result<PolicySet, String> {
        toml::from_str::<PolicySet>(toml_text).map_err(|e| e.to_string())
    }

    #[test]
    fn prefix_ranges() {
        let r: PrefixRange = "10.77.60.0/24 le 32".parse().expect("range");
        assert!(r.matches(&p("10.77.60.0/24")));
        assert!(r.matches(&p("10.77.60.7/32")));
        assert!(!r.matches(&p("10.77.61.7/32")));
        assert!(!r.matches(&p("10.77.0.0/16")));
        assert!(!r.matches(&p("::/0")));
        let exact: PrefixRange = "10.0.0.0/8".parse().expect("exact");
        assert!(exact.matches(&p("10.0.0.0/8")));
        assert!(!exact.matches(&p("10.1.0.0/16")));
        assert_eq!(exact, PrefixRange::exact(p("10.0.0.0/8")));
        let ge: PrefixRange = "10.0.0.0/8 ge 24".parse().expect("ge");
        assert!(ge.matches(&p("10.1.2.0/24")) && ge.matches(&p("10.1.2.3/32")));
        assert!(!ge.matches(&p("10.1.0.0/16")));
        let both: PrefixRange = "10.0.0.0/8 ge 16 le 24".parse().expect("ge le");
        assert!(both.matches(&p("10.1.0.0/16")) && both.matches(&p("10.1.2.0/24")));
        assert!(!both.matches(&p("10.1.2.0/25")) && !both.matches(&p("10.0.0.0/8")));
        let v6: PrefixRange = "2001:db8::/32 le 64".parse().expect("v6");
        assert!(v6.matches(&p("2001:db8:1::/48")));
        assert!(!v6.matches(&p("2001:db9::/48")));
        assert!(!v6.matches(&p("2001:db8::/96")));
        assert!(!v6.matches(&p("10.0.0.0/8")));
        let any: PrefixRange = "0.0.0.0/0 le 32".parse().expect("any v4");
        assert!(any.matches(&p("1.2.3.4/32")) && any.matches(&p("0.0.0.0/0")));
        assert_eq!(r.to_string(), "10.77.60.0/24 le 32");
        assert_eq!(ge.to_string(), "10.0.0.0/8 ge 24");
        assert_eq!(both.to_string(), "10.0.0.0/8 ge 16 le 24");
        assert_eq!(exact.to_string(), "10.0.0.0/8");
    }

    #[test]
    fn bad_prefix_ranges() {
        for (s, want) in [
            ("10.0.0.1/8", "host bits"),
            ("2001:db8::1/32", "host bits"),
            ("10.0.0.0/33", "0..=32"),
            ("2001:db8::/129", "over 128"),
            ("10.0.0.0/8 le 4", "ge 8"),
            ("10.0.0.0/24 ge 16", "shorter than the prefix length"),
            ("10.0.0.0/8 ge 24 le 16", "shorter than ge"),
            ("10.0.0.0/8 le 40", "over the maximum"),
            ("10.0.0.0/8 le", "needs a length"),
            ("10.0.0.0/8 le x", "not a prefix length"),
            ("10.0.0.0/8 lt 9", "unexpected"),
            ("10.0.0.0/8 le 9 le 10", "twice"),
            ("10.0.0.0", "ADDRESS/LENGTH"),
            ("ten/8", "not an IPv4 or IPv6"),
            ("", "empty"),
        ] {
            let e = s.parse::<PrefixRange>().expect_err(s);
            assert!(e.contains(want), "{s:?}: {e}");
        }
    }

    #[test]
    fn community_patterns() {
        let x = c("65000:7");
        assert!(CommunityPattern::from_str("65000:7")
            .expect("exact")
            .matches(x));
        assert!(CommunityPattern::from_str("65000:*")
            .expect("asn")
            .matches(x));
        assert!(CommunityPattern::from_str("*:7").expect("value").matches(x));
        assert!(CommunityPattern::from_str("*:*").expect("any").matches(x));
        assert!(!CommunityPattern::from_str("65001:*")
            .expect("asn")
            .matches(x));
        assert_eq!(
            CommunityPattern::from_str("no-export").expect("wk"),
            CommunityPattern::Exact(Community::NO_EXPORT)
        );
        assert!(CommunityPattern::from_str("70000:*").is_err());
        assert!(CommunityPattern::from_str("*:x").is_err());
        assert!(CommunityPattern::from_str("junk").is_err());
        assert_eq!(c("no-advertise"), Community::NO_ADVERTISE);
        assert_eq!(c("no-export-subconfed"), Community::NO_EXPORT_SUBCONFED);
    }

    const EXAMPLE: &str = r#"
[[policy]]
name = "from-rr"
default = "accept"
[[policy.term]]
match = { prefix = ["10.77.60.0/24 le 32"], community_any = ["65000:100"] }
action = { accept = true, set_local_pref = 200, add_communities = ["65000:7"] }

[[policy]]
name = "to-provider"
default = "reject"
[[policy.term]]
name = "no-hosts"
match = { prefix = ["0.0.0.0/0 ge 25"] }
action = { accept = false }
[[policy.term]]
name = "pool"
match = { prefix = ["10.77.0.0/16 le 24", "2001:db8::/32 le 48"] }
action = { accept = true, set_med = 10, remove_communities = ["65000:*"], add_communities = ["no-export"], prepend = { asn = 65000, times = 2 } }
[[policy.term]]
name = "tagged"
match = { community_all = ["65000:1", "65000:2"] }
action = { accept = true }
"#;

    #[test]
    fn toml_example_parses_and_applies() {
        let set = load(EXAMPLE).expect("example parses");
        assert_eq!(set.len(), 2);
        let rr = set.get("from-rr").expect("from-rr");
        assert_eq!(rr.default_action(), DefaultAction::Accept);
        assert_eq!(rr.terms().len(), 1);
        assert_eq!(rr.terms()[0].name, "term 1");

        // Matches prefix and community: local-pref and community set.
        let a = attrs(&["65000:100"]);
        let out = rr.apply(&p("10.77.60.5/32"), &a).expect("accepted");
        assert_eq!(out.local_pref, Some(200));
        assert_eq!(out.communities, vec![c("65000:100"), c("65000:7")]);
        // Community missing: default accept, unchanged.
        let a2 = attrs(&["65000:101"]);
        assert_eq!(rr.apply(&p("10.77.60.5/32"), &a2), Some(a2.clone()));
        assert_eq!(rr.matching_term(&p("10.77.60.5/32"), &a2), None);
        // Prefix outside: default.
        assert_eq!(rr.matching_term(&p("10.77.61.5/32"), &a), None);

        let prov = set.get("to-provider").expect("to-provider");
        // Term 1 rejects /25 and longer.
        assert_eq!(prov.apply(&p("10.77.60.5/32"), &a), None);
        assert_eq!(prov.matching_term(&p("10.77.60.5/32"), &a), Some(0));
        // Term 2: MED, community rewrite, prepend.
        let mut b = attrs(&["65000:100", "65001:5"]);
        b.as_path = vec![AsSegment {
            kind: AsSegmentKind::Sequence,
            asns: vec![64999],
        }];
        let out = prov.apply(&p("10.77.60.0/24"), &b).expect("pool accepted");
        assert_eq!(out.med, Some(10));
        assert_eq!(out.communities, vec![c("65001:5"), Community::NO_EXPORT]);
        assert_eq!(out.as_path[0].asns, vec![65000, 65000, 64999]);
        let out6 = prov.apply(&p("2001:db8:5::/48"), &b).expect("v6 pool");
        assert_eq!(out6.med, Some(10));
        // Term 3 needs both communities.
        let both = attrs(&["65000:2", "65000:1"]);
        assert_eq!(prov.apply(&p("192.0.2.0/24"), &both), Some(both.clone()));
        assert_eq!(prov.apply(&p("192.0.2.0/24"), &attrs(&["65000:1"])), None);
        assert!(set.get("nope").is_none());
    }

    #[test]
    fn first_matching_term_decides() {
        let set = load(
            r#"
[[policy]]
name = "order"
default = "reject"
[[policy.term]]
match = { prefix = ["10.0.0.0/8 le 32"] }
action = { accept = true, set_local_pref = 1 }
[[policy.term]]
match = { prefix = ["10.1.0.0/16 le 32"] }
action = { accept = true, set_local_pref = 2 }
[[policy.term]]
action = { accept = true, set_local_pref = 3 }
"#,
        )
        .expect("parses");
        let pol = set.get("order").expect("order");
        let a = attrs(&[]);
        let lp = |s: &str| pol.apply(&p(s), &a).and_then(|x| x.local_pref);
        assert_eq!(lp("10.1.2.3/32"), Some(1));
        // Empty match = catch-all.
        assert_eq!(lp("192.0.2.0/24"), Some(3));
    }

    #[test]
    fn default_reject_and_accept_all() {
        let a = attrs(&[]);
        assert_eq!(Policy::reject_all("r").apply(&p("10.0.0.0/8"), &a), None);
        assert_eq!(
            Policy::accept_all("a").apply(&p("10.0.0.0/8"), &a),
            Some(a.clone())
        );
        let set = load("[[policy]]\nname = \"x\"\ndefault = \"reject\"\n").expect("parses");
        assert_eq!(set.get("x").expect("x").apply(&p("10.0.0.0/8"), &a), None);
        assert!(PolicySet::default().is_empty());
    }

    #[test]
    fn apply_arc_shares_unchanged_attributes() {
        let pol = Policy::new(
            "x",
            DefaultAction::Accept,
            vec![Term {
                name: "t".into(),
                matches: Match {
                    prefix: vec!["10.0.0.0/8 le 32".parse().expect("range")],
                    ..Match::default()
                },
                action: Action::Accept(Modify {
                    set_local_pref: Some(200),
                    ..Modify::default()
                }),
            }],
        );
        let a = Arc::new(attrs(&[]));
        // Default accept: same Arc.
        let out = pol.apply_arc(&p("192.0.2.0/24"), &a).expect("accepted");
        assert!(Arc::ptr_eq(&out, &a));
        // Modified: new Arc.
        let out = pol.apply_arc(&p("10.0.0.0/8"), &a).expect("accepted");
        assert!(!Arc::ptr_eq(&out, &a));
        assert_eq!(out.local_pref, Some(200));
        // Setting the value it already has: same Arc.
        let again = pol.apply_arc(&p("10.0.0.0/8"), &out).expect("accepted");
        assert!(Arc::ptr_eq(&again, &out));
        assert!(Policy::reject_all("r")
            .apply_arc(&p("10.0.0.0/8"), &a)
            .is_none());
    }

    #[test]
    fn prepend_merges_and_splits_segments() {
        let mut a = attrs(&[]);
        a.prepend_as(65000, 3);
        assert_eq!(a.as_path.len(), 1);
        assert_eq!(a.as_path[0].asns, vec![65000; 3]);
        // A leading AS_SET gets a new SEQUENCE in front.
        a.as_path = vec![AsSegment {
            kind: AsSegmentKind::Set,
            asns: vec![1, 2],
        }];
        a.prepend_as(65000, 1);
        assert_eq!(a.as_path.len(), 2);
        assert_eq!(a.as_path[0].kind, AsSegmentKind::Sequence);
        // A full 255-ASN SEQUENCE overflows into a new segment.
        a.as_path = vec![AsSegment {
            kind: AsSegmentKind::Sequence,
            asns: vec![7; 254],
        }];
        a.prepend_as(65000, 3);
        assert_eq!(a.as_path.len(), 2);
        assert_eq!(a.as_path[0].asns, vec![65000; 2]);
        assert_eq!(a.as_path[1].asns.len(), 255);
        assert_eq!(a.as_path_len(), 257);
    }

    fn err_of(toml_text: &str) -> String {
        load(toml_text).expect_err("must fail")
    }

    #[test]
    fn validation_errors_name_policy_term_field_and_value() {
        let cases = [
            (
                "[[policy]]\nname = \"p\"\n",
                &["policy \"p\"", "default", "required"][..],
            ),
            (
                "[[policy]]\nname = \"p\"\ndefault = \"allow\"\n",
                &["policy \"p\"", "default = \"allow\"", "\"accept\" or \"reject\""],
            ),
            (
                "[[policy]]\nname = \"\"\ndefault = \"accept\"\n",
                &["name", "non-empty"],
            ),
            (
                "[[policy]]\nname = \"p\"\ndefault = \"accept\"\n[[policy.term]]\nmatch = { prefix = [\"10.0.0.1/8\"] }\naction = { accept = true }\n",
                &["policy \"p\" term 1", "match.prefix = \"10.0.0.1/8\"", "did you mean 10.0.0.0/8"],
            ),
            (
                "[[policy]]\nname = \"p\"\ndefault = \"accept\"\n[[policy.term]]\nname = \"t\"\nmatch = { community_any = [\"65000:70000\"] }\naction = { accept = true }\n",
                &["policy \"p\" term 1 \"t\"", "match.community_any = \"65000:70000\"", "0..=65535"],
            ),
            (
                "[[policy]]\nname = \"p\"\ndefault = \"accept\"\n[[policy.term]]\nmatch = {}\n",
                &["term 1", "action", "needs an action"],
            ),
            (
                "[[policy]]\nname = \"p\"\ndefault = \"accept\"\n[[policy.term]]\naction = { set_med = 5 }\n",
                &["term 1", "action.accept", "required"],
            ),
            (
                "[[policy]]\nname = \"p\"\ndefault = \"accept\"\n[[policy.term]]\naction = { accept = false, set_med = 5 }\n",
                &["action.accept = false", "cannot also set"],
            ),
            (
                "[[policy]]\nname = \"p\"\ndefault = \"accept\"\n[[policy.term]]\naction = { accept = true, add_communities = [\"65000:*\"] }\n",
                &["action.add_communities = \"65000:*\""],
            ),
            (
                "[[policy]]\nname = \"p\"\ndefault = \"accept\"\n[[policy.term]]\naction = { accept = true, prepend = { asn = 65000, times = 40 } }\n",
                &["action.prepend.times = 40", "1..=32"],
            ),
            (
                "[[policy]]\nname = \"p\"\ndefault = \"accept\"\n[[policy.term]]\naction = { accept = true, prepend = { asn = 0 } }\n",
                &["action.prepend.asn = 0"],
            ),
            (
                "[[policy]]\nname = \"p\"\ndefault = \"accept\"\n[[policy]]\nname = \"p\"\ndefault = \"reject\"\n",
                &["policy \"p\" is defined more than once"],
            ),
            (
                "[[policy]]\nname = \"p\"\ndefault = \"accept\"\n[[policy.term]]\nname = \"a\"\naction = { accept = true }\n[[policy.term]]\nname = \"a\"\naction = { accept = true }\n",
                &["policy \"p\": term \"a\" is defined more than once"],
            ),
            // Typos are caught by serde with the offending key.
            (
                "[[policy]]\nname = \"p\"\ndefault = \"accept\"\n[[policy.term]]\naction = { accept = true, set_localpref = 5 }\n",
                &["unknown field `set_localpref`"],
            ),
            (
                "[[policy]]\nname = \"p\"\ndefault = \"accept\"\n[[policy.term]]\nmatch = { prefixes = [] }\naction = { accept = true }\n",
                &["unknown field `prefixes`"],
            ),
            (
                "[[policy]]\nname = \"p\"\ndefault = \"accept\"\n[[policy.term]]\naction = { accept = true, set_local_pref = -1 }\n",
                &["set_local_pref"],
            ),
            ("[[polcy]]\nname = \"p\"\n", &["unknown field `polcy`"]),
        ];
        for (text, wants) in cases {
            let e = err_of(text);
            for w in wants {
                assert!(e.contains(w), "error for\n{text}\nis\n{e}\nmissing {w:?}");
            }
        }
    }

    #[test]
    fn single_policy_deserializes() {
        #[derive(Deserialize)]
        struct Wrapper {
            import: Policy,
        }
        let w: Wrapper = toml::from_str(
            "[import]\nname = \"in\"\ndefault = \"accept\"\n[[import.term]]\naction = { accept = false }\n",
        )
        .expect("parses");
        assert_eq!(w.import.name(), "in");
        assert_eq!(w.import.terms()[0].action, Action::Reject);
        assert_eq!(w.import.apply(&p("10.0.0.0/8"), &attrs(&[])), None);
    }
}
