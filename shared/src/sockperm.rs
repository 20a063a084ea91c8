//! Who may use the Unix sockets of the CER processes (cer-control's admin
//! socket, the dataplane's admin and feed sockets): the socket file gets a
//! configured mode and group after bind (default 0660, group root), and
//! every accepted connection is checked with `SO_PEERCRED`: root, the
//! socket's owner (the process's user) or a member of the group may talk to
//! it; anyone else gets one error line and is closed, and a counter moves.
//! The file mode alone would keep others out only while nobody widens it;
//! the check holds whatever the file system says.

use std::io;
use std::os::fd::RawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The default mode of the sockets: owner and group read/write.
pub const DEFAULT_MODE: u32 = 0o660;
/// The default group: root.
pub const DEFAULT_GROUP: &str = "root";

/// Checks a configured socket mode (permission bits only).
pub fn check_mode(mode: u32) -> Result<(), String> {
    if mode > 0o777 {
        return Err(format!(
            "{mode:#o} is not a permission mode (0o000-0o777, e.g. 0o660)"
        ));
    }
    Ok(())
}

/// A group by name or number (gid).
pub fn resolve_group(group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let name =
        std::ffi::CString::new(group).map_err(|_| format!("'{group}' is not a group name"))?;
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; getgrnam_r writes into grp and buf only.
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        )
    };
    if rc != 0 || out.is_null() {
        return Err(format!(
            "no group named '{group}' on this system (give a name from /etc/group or a gid)"
        ));
    }
    Ok(grp.gr_gid)
}

/// The access rule of one socket and its refusal counter.
#[derive(Debug, Clone)]
pub struct SocketAccess {
    /// The user the process runs as (the socket file's owner).
    pub owner_uid: u32,
    pub gid: u32,
    refused: Arc<AtomicU64>,
}

/// Who is on the other end of a Unix connection (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// The credentials of the peer of a connected Unix socket.
pub fn peer_cred(fd: RawFd) -> io::Result<PeerCred> {
    let mut c = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `c`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut c as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(PeerCred {
        pid: c.pid,
        uid: c.uid,
        gid: c.gid,
    })
}

/// The supplementary groups of a process (`Groups:` of /proc/PID/status).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Groups:").map(|g| {
                    g.split_whitespace()
                        .filter_map(|x| x.parse().ok())
                        .collect()
                })
            })
        })
        .unwrap_or_default()
}

impl SocketAccess {
    /// The rule for sockets of this process with group `gid`.
    pub fn new(gid: u32) -> Self {
        SocketAccess {
            // SAFETY: geteuid cannot fail.
            owner_uid: unsafe { libc::geteuid() },
            gid,
            refused: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Sets the socket file's mode and group (right after bind).
    pub fn apply(&self, path: &Path, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        std::os::unix::fs::chown(path, None, Some(self.gid))
    }

    /// Whether the peer of the accepted connection `fd` may use the socket;
    /// the error (counted) says who was refused and why.
    pub fn check(&self, fd: RawFd) -> Result<PeerCred, String> {
        let c = match peer_cred(fd) {
            Ok(c) => c,
            Err(e) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(format!(
                    "refused: the peer's credentials are unknown (SO_PEERCRED: {e})"
                ));
            }
        };
        if c.uid == 0
            || c.uid == self.owner_uid
            || c.gid == self.gid
            || supplementary_groups(c.pid).contains(&self.gid)
        {
            return Ok(c);
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        Err(format!(
            "refused: uid {} (pid {}) is not root, the socket's owner (uid {}) or a member of its group (gid {})",
            c.uid, c.pid, self.owner_uid, self.gid
        ))
    }

    /// Answers a refused client: its first line is read (up to 64 KiB,
    /// at most a second), so a client that wrote a request reads the
    /// refusal instead of a broken pipe, then `line` is written.
    pub fn refuse(stream: std::os::unix::net::UnixStream, line: &[u8]) {
        use std::io::{BufRead, Read, Write};
        let _ = std::thread::Builder::new().name("refused".into()).spawn({
            let line = line.to_vec();
            move || {
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(1)));
                let mut first = Vec::new();
                if let Ok(r) = stream.try_clone() {
                    let _ =
                        std::io::BufReader::new(r.take(64 * 1024)).read_until(b'\n', &mut first);
                }
                let _ = (&stream).write_all(&line);
            }
        });
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn modes_and_groups_are_checked() {
        assert!(check_mode(0o660).is_ok());
        assert!(check_mode(0o1777).unwrap_err().contains("0o1777"));
        assert_eq!(resolve_group("root"), Ok(0));
        assert_eq!(resolve_group("1234"), Ok(1234));
        assert!(resolve_group("no-such-group-here")
            .unwrap_err()
            .contains("no group named"));
    }

    /// As root: the mode and group land on the file, root is let in, and a
    /// child that drops to uid/gid 65534 before connecting is refused (the
    /// mode is opened up so the file system lets it connect at all).
    #[test]
    fn peer_credentials_decide() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root (setuid in a child)");
            return;
        }
        let dir = std::env::temp_dir().join(format!("cer-sockperm-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).unwrap();
        let access = SocketAccess::new(1234);
        access.apply(&path, 0o666).unwrap();
        let md = std::fs::metadata(&path).unwrap();
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert_eq!((md.permissions().mode() & 0o777, md.gid()), (0o666, 1234));
        // Root.
        let _me = UnixStream::connect(&path).unwrap();
        let (s, _) = l.accept().unwrap();
        assert_eq!(access.check(s.as_raw_fd()).unwrap().uid, 0);
        // An unprivileged child (Command's pre_exec runs after fork).
        let child = |gid: u32| {
            use std::os::unix::process::CommandExt;
            let mut cmd = std::process::Command::new("/usr/bin/python3");
            cmd.args([
                "-c",
                "import socket, sys, time; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); time.sleep(5)",
            ])
            .arg(&path);
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(65534) != 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            cmd.spawn().unwrap()
        };
        let mut c = child(65534);
        let (s, _) = l.accept().unwrap();
        let e = access.check(s.as_raw_fd()).unwrap_err();
        assert!(e.contains("uid 65534") && e.contains("gid 1234"), "{e}");
        assert_eq!(access.refused(), 1);
        let _ = c.kill();
        let _ = c.wait();
        // A member of the group is let in.
        let mut c = child(1234);
        let (s, _) = l.accept().unwrap();
        assert_eq!(access.check(s.as_raw_fd()).unwrap().uid, 65534);
        assert_eq!(access.refused(), 1);
        let _ = c.kill();
        let _ = c.wait();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
