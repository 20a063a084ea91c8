//! Small JSON state files that must survive a crash (cer-control's local
//! endpoints, the capture plane's origin memory): read whole; written whole
//! to a temporary file that is fsynced and renamed over the old one, then
//! the directory is fsynced so the rename is durable too. A reader sees the
//! old file or the new one, never half of either.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What went wrong with a state file; `what` names the file's role for the
/// operator ("endpoint state"), and the path is always given.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("{what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {}: {detail}; {hint}", path.display())]
    Parse {
        what: &'static str,
        path: PathBuf,
        detail: String,
        hint: &'static str,
    },
    #[error("{what} {}: version {found} (this program reads version {expected})", path.display())]
    Version {
        what: &'static str,
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("saving {what} {}: {source}", path.display())]
    Write {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reads `path` as JSON; `Ok(None)` when the file does not exist yet.
/// `hint` tells the operator what to do with a file that does not parse.
pub fn load_json<T: DeserializeOwned>(
    path: &Path,
    what: &'static str,
    hint: &'static str,
) -> Result<Option<T>, StateFileError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateFileError::Parse {
                what,
                path: path.to_path_buf(),
                detail: e.to_string(),
                hint,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateFileError::Read {
            what,
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `value` to `path` as pretty JSON, atomically and durably (see the
/// module doc), creating the directory if needed.
pub fn save_json<T: Serialize>(
    path: &Path,
    what: &'static str,
    value: &T,
) -> Result<(), StateFileError> {
    let err = |source: std::io::Error| StateFileError::Write {
        what,
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let body = serde_json::to_vec_pretty(value).map_err(|e| err(std::io::Error::other(e)))?;
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(&body).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_absent_and_garbage() {
        let dir = std::env::temp_dir().join(format!("cer-state-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub").join("state.json");
        let got: Option<Vec<u32>> = load_json(&path, "test state", "remove it").unwrap();
        assert_eq!(got, None);
        save_json(&path, "test state", &vec![1u32, 2, 3]).unwrap();
        let got: Option<Vec<u32>> = load_json(&path, "test state", "remove it").unwrap();
        assert_eq!(got, Some(vec![1, 2, 3]));
        assert!(!dir.join("sub").join("state.json.tmp").exists());
        std::fs::write(&path, b"{garbage").unwrap();
        let e = load_json::<Vec<u32>>(&path, "test state", "remove it").unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("test state ")
                && text.contains("state.json")
                && text.ends_with("; remove it"),
            "{text}"
        );
        // A directory where the file should be: a read error naming the path.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let e = load_json::<Vec<u32>>(&path, "test state", "remove it").unwrap_err();
        assert!(matches!(e, StateFileError::Read { .. }), "{e}");
        let e = save_json(&path, "test state", &1u32).unwrap_err();
        assert!(e.to_string().starts_with("saving test state "), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
