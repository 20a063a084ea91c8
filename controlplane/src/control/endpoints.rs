//! Endpoints this node owns (advertises), persisted so a restart
//! re-advertises them. The file is JSON, replaced atomically and durably
//! (`cer_shared::state_file`); a corrupt file is an error naming it, never
//! silently emptied.

use cer_shared::state_file::{self, StateFileError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    /// LOCAL_PREF advertised with it.
    pub local_pref: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    endpoints: Vec<Endpoint>,
}

pub struct Endpoints {
    path: PathBuf,
    map: BTreeMap<Ipv4Addr, Endpoint>,
}

impl Endpoints {
    /// Loads the file (absent = none yet).
    pub fn load(path: &Path) -> Result<Self, StateFileError> {
        let file: Option<File> = state_file::load_json(path, WHAT, "fix or remove the file")?;
        Ok(Endpoints {
            path: path.to_path_buf(),
            map: file
                .map(|f| f.endpoints.into_iter().map(|e| (e.ip, e)).collect())
                .unwrap_or_default(),
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Endpoint> {
        self.map.values()
    }

    pub fn get(&self, ip: Ipv4Addr) -> Option<&Endpoint> {
        self.map.get(&ip)
    }

    /// Adds or updates; persists before returning.
    pub fn set(&mut self, e: Endpoint) -> Result<(), StateFileError> {
        let old = self.map.insert(e.ip, e);
        self.save().inspect_err(|_| {
            match old {
                Some(o) => self.map.insert(e.ip, o),
                None => self.map.remove(&e.ip),
            };
        })
    }

    pub fn remove(&mut self, ip: Ipv4Addr) -> Result<bool, StateFileError> {
        let Some(old) = self.map.remove(&ip) else {
            return Ok(false);
        };
        self.save().inspect_err(|_| {
            self.map.insert(ip, old);
        })?;
        Ok(true)
    }

    /// Writes the file even with no endpoints: its presence marks that this
    /// node ran before (a restart, for graceful restart's R bit).
    pub fn persist(&self) -> Result<(), StateFileError> {
        self.save()
    }

    fn save(&self) -> Result<(), StateFileError> {
        state_file::save_json(
            &self.path,
            WHAT,
            &File {
                version: 1,
                endpoints: self.map.values().copied().collect(),
            },
        )
    }
}

/// The file's role in error messages.
const WHAT: &str = "endpoint state";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_and_reloads() {
        let dir = std::env::temp_dir().join(format!("cer-ep-{}", std::process::id()));
        let path = dir.join("endpoints.json");
        let _ = std::fs::remove_dir_all(&dir);
        let mut e = Endpoints::load(&path).unwrap();
        assert_eq!(e.iter().count(), 0);
        e.set(Endpoint {
            ip: "10.77.60.10".parse().unwrap(),
            local_pref: 100,
        })
        .unwrap();
        e.set(Endpoint {
            ip: "10.77.60.11".parse().unwrap(),
            local_pref: 200,
        })
        .unwrap();
        assert!(e.remove("10.77.60.10".parse().unwrap()).unwrap());
        assert!(!e.remove("10.77.60.10".parse().unwrap()).unwrap());
        let again = Endpoints::load(&path).unwrap();
        assert_eq!(
            again.iter().copied().collect::<Vec<_>>(),
            vec![Endpoint {
                ip: "10.77.60.11".parse().unwrap(),
                local_pref: 200
            }]
        );
        std::fs::write(&path, b"{garbage").unwrap();
        let err = Endpoints::load(&path).err().unwrap().to_string();
        assert!(err.contains("endpoints.json"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
