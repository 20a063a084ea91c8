//! Memory for big lookup tables on 2 MiB pages: an anonymous mapping in
//! whole 2 MiB units with `MADV_HUGEPAGE`, so the kernel backs it with
//! transparent huge pages (`/sys/kernel/mm/transparent_hugepage/enabled` at
//! `madvise` or `always`). A million-entry /32 table is 32 MiB: on 4 KiB
//! pages every random lookup also misses the TLB and walks the page tables
//! (more cache misses); on 2 MiB pages the 16 entries fit the second-level
//! TLB. The pages are touched when the table is filled (snapshot build),
//! never on the packet path. Where THP is off this is an ordinary mapping.

use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Size of a transparent huge page on x86_64 and aarch64 (4 KiB base pages).
pub const HUGE_2M: usize = 2 << 20;

/// A fixed-length slice of `T` on its own anonymous mapping.
pub struct HugeSlice<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    /// Bytes mapped (a multiple of [`HUGE_2M`]).
    mapped: usize,
}

// SAFETY: HugeSlice owns its memory exclusively (like Box<[T]>); sharing or
// sending it is as safe as sharing or sending the `T`s in it.
unsafe impl<T: Copy + Send> Send for HugeSlice<T> {}
// SAFETY: as above; `&HugeSlice` only gives `&[T]`.
unsafe impl<T: Copy + Sync> Sync for HugeSlice<T> {}

impl<T: Copy> HugeSlice<T> {
    /// `len` copies of `value`; `None` if the mapping fails (out of memory,
    /// or `len` too large), so the caller can fall back to the heap.
    pub fn filled(len: usize, value: T) -> Option<HugeSlice<T>> {
        let bytes = len.checked_mul(std::mem::size_of::<T>())?;
        if len == 0 || bytes == 0 || std::mem::align_of::<T>() > 4096 {
            return None;
        }
        let mapped = bytes.checked_add(HUGE_2M - 1)? / HUGE_2M * HUGE_2M;
        // Over-map by one huge page to place the table on a 2 MiB boundary
        // (THP needs aligned 2 MiB ranges), then unmap the slack.
        let total = mapped + HUGE_2M;
        // SAFETY: an anonymous private mapping with no address hint: it
        // touches no existing memory.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let start = raw as usize;
        let aligned = (start + HUGE_2M - 1) & !(HUGE_2M - 1);
        let head = aligned - start;
        let tail = total - head - mapped;
        // SAFETY: both ranges lie inside the mapping made above and are not
        // used by anything; unmapping them leaves [aligned, aligned+mapped).
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap((aligned + mapped) as *mut libc::c_void, tail);
            }
            // A hint only: without THP support it fails and changes nothing.
            libc::madvise(aligned as *mut libc::c_void, mapped, libc::MADV_HUGEPAGE);
        }
        let ptr = NonNull::new(aligned as *mut T)?;
        for i in 0..len {
            // SAFETY: i < len and len * size_of::<T>() <= mapped bytes of
            // writable memory at a 2 MiB (so T-) aligned address.
            unsafe { ptr.as_ptr().add(i).write(value) };
        }
        Some(HugeSlice { ptr, len, mapped })
    }

    /// Whether the kernel backs this mapping with huge pages right now
    /// (`AnonHugePages` of its range in /proc/self/smaps), for diagnostics.
    pub fn huge_backed_bytes(&self) -> u64 {
        let start = self.ptr.as_ptr() as usize;
        let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
            return 0;
        };
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((a, b)) = range.split_once('-') {
                    if let (Ok(a), Ok(b)) =
                        (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                    {
                        inside = a <= start && start < b;
                        continue;
                    }
                }
            }
            if inside {
                if let Some(kb) = line.strip_prefix("AnonHugePages:") {
                    return kb
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .unwrap_or(0)
                        * 1024;
                }
            }
        }
        0
    }
}

impl<T: Copy> Deref for HugeSlice<T> {
    type Target = [T];
    #[inline(always)]
    fn deref(&self) -> &[T] {
        // SAFETY: ptr points to len initialized Ts (written in `filled`),
        // owned by self for its lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> DerefMut for HugeSlice<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in deref, and &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Clone for HugeSlice<T> {
    fn clone(&self) -> Self {
        let mut c = HugeSlice::filled(self.len, self[0]).expect("mapping for a table copy");
        c.copy_from_slice(self);
        c
    }
}

impl<T: Copy> Drop for HugeSlice<T> {
    fn drop(&mut self) {
        // SAFETY: exactly the range mapped in `filled`, unmapped once (T is
        // Copy: nothing to drop in it).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.mapped) };
    }
}

impl<T: Copy + std::fmt::Debug> std::fmt::Debug for HugeSlice<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HugeSlice")
            .field("len", &self.len)
            .field("mapped", &self.mapped)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_aligned_readable_writable_and_cloned() {
        let mut s = HugeSlice::filled(3 << 20, 7u32).unwrap();
        assert_eq!(s.len(), 3 << 20);
        assert_eq!(s.as_ptr() as usize % HUGE_2M, 0);
        assert!(s.iter().all(|&x| x == 7));
        s[12345] = 9;
        let c = s.clone();
        assert_eq!(c[12345], 9);
        assert_eq!(c[12346], 7);
        // Diagnostics never fail, whatever THP does here.
        let _ = s.huge_backed_bytes();
    }

    #[test]
    fn empty_and_overflowing_lengths_are_refused() {
        assert!(HugeSlice::filled(0, 1u64).is_none());
        assert!(HugeSlice::filled(usize::MAX / 4, 1u64).is_none());
    }
}
