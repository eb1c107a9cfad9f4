//! An owned memory mapping (device region or anonymous memory) with
//! bounds-checked volatile accessors. Unmapped on drop.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

/// A shared mapping of `len` bytes.
///
/// # Invariants
///
/// `ptr` is the start of a live `mmap` of exactly `len` bytes, readable and
/// writable, owned by this value and unmapped only by its `Drop`.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// `mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_SHARED, fd, offset)`.
    pub fn shared(fd: BorrowedFd<'_>, len: usize, offset: u64) -> io::Result<Self> {
        Self::map(len, libc::MAP_SHARED, fd.as_raw_fd(), offset)
    }

    /// Anonymous, private, zero-filled memory.
    pub fn anonymous(len: usize) -> io::Result<Self> {
        Self::map(len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
    }

    fn map(len: usize, flags: i32, fd: i32, offset: u64) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        // SAFETY: a fresh mapping at an address the kernel chooses cannot
        // alias any Rust object; `fd` is either -1 (anonymous) or a live
        // descriptor borrowed for the duration of the call.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        Ok(Mapping { ptr, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The mapping's start address (for `IOMMU_IOAS_MAP`).
    pub fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// Panics unless `[off, off + size)` is inside the mapping and `off` is
    /// aligned to `align`.
    fn check(&self, off: usize, size: usize, align: usize) {
        let end = off.checked_add(size);
        assert!(
            end.is_some_and(|e| e <= self.len),
            "access [{off:#x}, +{size:#x}) outside a mapping of {:#x} bytes",
            self.len
        );
        assert!(off % align == 0, "misaligned access at {off:#x}");
    }

    pub fn read_u32(&self, off: usize) -> u32 {
        self.check(off, 4, 4);
        // SAFETY: in bounds and aligned (checked above); the mapping is live
        // (type invariant). Volatile: this may be device memory.
        unsafe { self.ptr.as_ptr().add(off).cast::<u32>().read_volatile() }
    }

    pub fn read_u64(&self, off: usize) -> u64 {
        self.check(off, 8, 8);
        // SAFETY: as in `read_u32`.
        unsafe { self.ptr.as_ptr().add(off).cast::<u64>().read_volatile() }
    }

    pub fn write_u64(&self, off: usize, val: u64) {
        self.check(off, 8, 8);
        // SAFETY: as in `read_u32`; the mapping is writable. Other mappings
        // of the same memory (or a device) may change it concurrently, which
        // is why every access is volatile and no reference is ever formed.
        unsafe { self.ptr.as_ptr().add(off).cast::<u64>().write_volatile(val) }
    }

    /// Copy `out.len()` bytes from offset `off` into `out`, one volatile byte
    /// load at a time.
    pub fn read_bytes(&self, off: usize, out: &mut [u8]) {
        self.check(off, out.len(), 1);
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: `off + i` is in bounds (checked above).
            *b = unsafe { self.ptr.as_ptr().add(off + i).read_volatile() };
        }
    }

    /// Copy `data` to offset `off`, one volatile byte store at a time.
    pub fn write_bytes(&self, off: usize, data: &[u8]) {
        self.check(off, data.len(), 1);
        for (i, b) in data.iter().enumerate() {
            // SAFETY: `off + i` is in bounds (checked above).
            unsafe { self.ptr.as_ptr().add(off + i).write_volatile(*b) };
        }
    }

    /// Fill `[off, off + len)` with `byte`.
    pub fn fill(&self, off: usize, len: usize, byte: u8) {
        self.check(off, len, 1);
        for i in 0..len {
            // SAFETY: `off + i` is in bounds (checked above).
            unsafe { self.ptr.as_ptr().add(off + i).write_volatile(byte) };
        }
    }

    /// `madvise(MADV_HUGEPAGE)` on `[off, off + len)`, or `MADV_NOHUGEPAGE`
    /// when `!huge`; `off` must be page aligned.
    pub fn advise_huge(&self, off: usize, len: usize, huge: bool) -> io::Result<()> {
        self.check(off, len, 1);
        let advice = if huge {
            libc::MADV_HUGEPAGE
        } else {
            libc::MADV_NOHUGEPAGE
        };
        // SAFETY: the range is inside the mapping (checked above), which this
        // value owns; these two advices change which pages may back it, not
        // what it holds.
        let r = unsafe { libc::madvise(self.ptr.as_ptr().add(off).cast(), len, advice) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Read `len` bytes at `off` into a new vector.
    pub fn to_vec(&self, off: usize, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.read_bytes(off, &mut v);
        v
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping this value owns (type
        // invariant) and no accessor can outlive `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_round_trip() {
        let m = Mapping::anonymous(4096).unwrap();
        assert_eq!(m.len(), 4096);
        assert_eq!(m.read_u64(0), 0);
        m.write_u64(8, 0x0123_4567_89ab_cdef);
        assert_eq!(m.read_u64(8), 0x0123_4567_89ab_cdef);
        assert_eq!(m.read_u32(8), 0x89ab_cdef);
        m.write_bytes(100, b"hello");
        assert_eq!(m.to_vec(100, 5), b"hello");
        m.fill(200, 3, 0xa5);
        assert_eq!(m.to_vec(199, 5), [0, 0xa5, 0xa5, 0xa5, 0]);
    }

    #[test]
    fn huge_advice_needs_a_page_aligned_start() {
        let m = Mapping::anonymous(8192).unwrap();
        let e = m.advise_huge(1, 4095, false).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    #[should_panic(expected = "outside a mapping")]
    fn out_of_bounds_panics() {
        let m = Mapping::anonymous(4096).unwrap();
        m.read_u64(4096);
    }

    #[test]
    #[should_panic(expected = "misaligned")]
    fn misaligned_panics() {
        let m = Mapping::anonymous(4096).unwrap();
        m.read_u64(4);
    }
}
