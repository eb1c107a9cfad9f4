//! What `/proc/self/fdinfo` says about a dma-buf descriptor.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::errno::{Context, Error, Result};
use crate::report::Facts;

/// The dma-buf fdinfo line `key:` of `fd` (`size`, `exp_name`, ...).
pub fn fdinfo(fd: &OwnedFd, key: &str) -> Result<String> {
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
