//! What `/proc/self/fdinfo` says about a dma-buf descriptor (or any other).

use std::os::fd::{AsRawFd, OwnedFd};

use crate::errno::{Context, Error, Result};
use crate::report::Facts;

/// The fdinfo line `key:` of `fd` (`flags`; for a dma-buf also `size`,
/// `exp_name`, ...).
pub fn fdinfo(fd: &impl AsRawFd, key: &str) -> Result<String> {
    let path = format!("/proc/self/fdinfo/{}", fd.as_raw_fd());
    let text = std::fs::read_to_string(&path).op(format!("read {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| Error::msg(format!("{path} has no {key} line")))
}

/// Check that `fd` is a dma-buf of `len` bytes exported by `exporter`.
pub fn check_exporter(fd: &OwnedFd, exporter: &str, len: u64, f: &mut Facts) -> Result<()> {
    let (name, size) = (fdinfo(fd, "exp_name")?, fdinfo(fd, "size")?);
    f.add(format!(
        "dma-buf fd {}: exp_name {name}, size {size}",
        fd.as_raw_fd()
    ));
    if name != exporter || size != len.to_string() {
        return Err(Error::msg(format!(
            "expected exp_name {exporter} and size {len}"
        )));
    }
    Ok(())
}

/// The kernel's `O_ACCMODE`: musl's includes `O_PATH` (as `O_SEARCH`), which
/// is not part of the access mode the kernel keeps in `f_flags`.
pub const O_ACCMODE: i32 = 0o3;

/// The access mode (`O_RDONLY`, `O_WRONLY` or `O_RDWR`) in an fdinfo
/// `flags:` value, which the kernel prints in octal ("02100002").
pub fn access_mode(flags: &str) -> Option<i32> {
    let v = i32::from_str_radix(flags.trim(), 8).ok()?;
    Some(v & O_ACCMODE)
}

/// The name of an access mode.
pub fn access_name(mode: i32) -> &'static str {
    match mode {
        libc::O_RDONLY => "O_RDONLY",
        libc::O_WRONLY => "O_WRONLY",
        libc::O_RDWR => "O_RDWR",
        _ => "an unknown access mode",
    }
}

/// Check that `fd` was opened with access mode `want`, as fdinfo says.
pub fn check_access(fd: &impl AsRawFd, want: i32, f: &mut Facts) -> Result<()> {
    let flags = fdinfo(fd, "flags")?;
    let got = access_mode(&flags)
        .ok_or_else(|| Error::msg(format!("fdinfo flags {flags:?} is not octal")))?;
    f.add(format!(
        "fd {}: fdinfo flags {flags}, {}",
        fd.as_raw_fd(),
        access_name(got)
    ));
    if got != want {
        return Err(Error::msg(format!("expected {}", access_name(want))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_modes() {
        // O_RDONLY | O_CLOEXEC, O_RDWR | O_CLOEXEC | O_LARGEFILE, O_WRONLY.
        assert_eq!(access_mode("02000000"), Some(libc::O_RDONLY));
        assert_eq!(access_mode("02100002\n"), Some(libc::O_RDWR));
        assert_eq!(access_mode("01"), Some(libc::O_WRONLY));
        assert_eq!(access_mode("0"), Some(libc::O_RDONLY));
        // O_PATH is not part of the access mode (musl's O_ACCMODE has it).
        assert_eq!(access_mode("010000001"), Some(libc::O_WRONLY));
        assert_eq!(access_mode("0x2"), None);
        assert_eq!(access_mode("08"), None);
        assert_eq!(access_name(libc::O_RDONLY), "O_RDONLY");
        assert_eq!(access_name(libc::O_RDWR), "O_RDWR");
    }

    #[test]
    fn access_of_real_descriptors() {
        let rw = crate::sys::memfd_create(c"dmabuf-tool-test").unwrap();
        let ro = std::fs::File::open(format!("/proc/self/fd/{}", rw.as_raw_fd())).unwrap();
        let mut f = Facts::default();
        check_access(&rw, libc::O_RDWR, &mut f).unwrap();
        check_access(&ro, libc::O_RDONLY, &mut f).unwrap();
        let e = check_access(&ro, libc::O_RDWR, &mut f).unwrap_err();
        assert_eq!(e.to_string(), "expected O_RDWR");
    }
}
