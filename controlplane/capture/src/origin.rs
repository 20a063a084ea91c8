//! What the reconciler remembers per /32 between a capture and the release
//! that ends it: the holder it took the address from (`Origin`), so the
//! release hands the address back to that NIC instead of leaving it on
//! nobody. Kept in memory and, when a file is configured, persisted before
//! the capture call it describes (JSON, replaced atomically and durably by
//! `cer_shared::state_file`), so a restarted cer-control still knows. A corrupt file
//! is an error naming it, never silently emptied. The whole file is
//! rewritten per change: it holds only the /32s captured here (bounded by
//! the provider's per-NIC address quota), not the pool.

use cer_shared::state_file::{self, StateFileError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Where a captured /32 came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The NIC that held it when this router captured it (provider id:
    /// ENI id, NIC resource id, VNIC OCID); None: nobody held it.
    pub holder: Option<String>,
    /// When the capture that recorded it was planned.
    pub since_unix_ms: u64,
}

impl Origin {
    /// "eni-0abc" or "nobody", for the operator.
    pub fn text(&self) -> String {
        self.holder.clone().unwrap_or_else(|| "nobody".to_string())
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    origins: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    ip: Ipv4Addr,
    holder: Option<String>,
    since_unix_ms: u64,
}

const VERSION: u32 = 1;

/// The origin of every /32 captured here and not yet released.
#[derive(Debug, Default)]
pub struct Origins {
    path: Option<PathBuf>,
    map: BTreeMap<Ipv4Addr, Origin>,
}

impl Origins {
    /// Loads `path` (absent file: none yet). Without a path the memory
    /// lives as long as the process.
    pub fn load(path: Option<&Path>) -> Result<Origins, StateFileError> {
        let Some(path) = path else {
            return Ok(Origins::default());
        };
        let file: Option<File> = state_file::load_json(
            path,
            WHAT,
            "fix or remove the file (removing it makes a release of an address captured before leave it on nobody)",
        )?;
        let map = match file {
            Some(f) if f.version != VERSION => {
                return Err(StateFileError::Version {
                    what: WHAT,
                    path: path.to_path_buf(),
                    found: f.version,
                    expected: VERSION,
                })
            }
            Some(f) => f
                .origins
                .into_iter()
                .map(|e| {
                    (
                        e.ip,
                        Origin {
                            holder: e.holder,
                            since_unix_ms: e.since_unix_ms,
                        },
                    )
                })
                .collect(),
            None => BTreeMap::new(),
        };
        Ok(Origins {
            path: Some(path.to_path_buf()),
            map,
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn get(&self, ip: Ipv4Addr) -> Option<&Origin> {
        self.map.get(&ip)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Ipv4Addr, &Origin)> {
        self.map.iter()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Records `origin` for `ip` and persists. The memory keeps it even when
    /// writing the file fails (the error says so).
    pub fn insert(&mut self, ip: Ipv4Addr, origin: Origin) -> Result<(), StateFileError> {
        if self.map.get(&ip) == Some(&origin) {
            return Ok(());
        }
        self.map.insert(ip, origin);
        self.save()
    }

    /// Forgets `ip` and persists; false when nothing was remembered.
    pub fn remove(&mut self, ip: Ipv4Addr) -> Result<bool, StateFileError> {
        if self.map.remove(&ip).is_none() {
            return Ok(false);
        }
        self.save().map(|_| true)
    }

    /// Keeps only the entries `keep` accepts, and persists if any went.
    pub fn retain(
        &mut self,
        mut keep: impl FnMut(Ipv4Addr) -> bool,
    ) -> Result<usize, StateFileError> {
        let before = self.map.len();
        self.map.retain(|ip, _| keep(*ip));
        let gone = before - self.map.len();
        if gone > 0 {
            self.save()?;
        }
        Ok(gone)
    }

    fn save(&self) -> Result<(), StateFileError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        state_file::save_json(
            path,
            WHAT,
            &File {
                version: VERSION,
                origins: self
                    .map
                    .iter()
                    .map(|(ip, o)| Entry {
                        ip: *ip,
                        holder: o.holder.clone(),
                        since_unix_ms: o.since_unix_ms,
                    })
                    .collect(),
            },
        )
    }
}

/// The file's role in error messages.
const WHAT: &str = "capture origin memory";

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 60, last)
    }

    #[test]
    fn persists_reloads_and_refuses_garbage() {
        let dir = std::env::temp_dir().join(format!("cer-origins-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub").join("origins.json");
        let mut o = Origins::load(Some(&path)).unwrap();
        assert!(o.is_empty());
        o.insert(
            ip(13),
            Origin {
                holder: Some("ocid1.vnic.oc1..wl".into()),
                since_unix_ms: 1,
            },
        )
        .unwrap();
        o.insert(
            ip(14),
            Origin {
                holder: None,
                since_unix_ms: 2,
            },
        )
        .unwrap();
        assert!(o.remove(ip(14)).unwrap());
        assert!(!o.remove(ip(14)).unwrap());
        let again = Origins::load(Some(&path)).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(
            again.get(ip(13)).map(Origin::text).as_deref(),
            Some("ocid1.vnic.oc1..wl")
        );
        std::fs::write(&path, b"{garbage").unwrap();
        let e = Origins::load(Some(&path)).unwrap_err().to_string();
        assert!(
            e.contains("origins.json") && e.contains("fix or remove"),
            "{e}"
        );
        std::fs::write(&path, br#"{"version": 7, "origins": []}"#).unwrap();
        assert!(Origins::load(Some(&path))
            .unwrap_err()
            .to_string()
            .contains("version 7"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_a_file_it_is_memory_only() {
        let mut o = Origins::load(None).unwrap();
        o.insert(
            ip(1),
            Origin {
                holder: None,
                since_unix_ms: 0,
            },
        )
        .unwrap();
        assert_eq!(o.get(ip(1)).map(Origin::text).as_deref(), Some("nobody"));
        assert_eq!(o.retain(|_| false).unwrap(), 1);
        assert!(o.is_empty());
    }
}
