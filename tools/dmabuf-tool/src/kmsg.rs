//! The kernel log through `/dev/kmsg`: write the runner's expect markers
//! ("dmabuf-test: expect-begin KIND", see scripts/analyze.py) and read the
//! records that arrive after a point.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::thread::sleep;
use std::time::{Duration, Instant};

const KMSG: &str = "/dev/kmsg";

/// Write `dmabuf-test: {text}` to the kernel log. Best effort: returns
/// whether it was written.
pub fn mark(text: &str) -> bool {
    OpenOptions::new()
        .write(true)
        .open(KMSG)
        .and_then(|mut f| f.write_all(format!("dmabuf-test: {text}\n").as_bytes()))
        .is_ok()
}

/// The message part of a `/dev/kmsg` record ("6,123,456,-;text\n KEY=v").
pub fn record_text(record: &str) -> Option<&str> {
    let (_, rest) = record.split_once(';')?;
    Some(rest.lines().next().unwrap_or(""))
}

/// Reads the records logged after `open`.
pub struct Watch {
    f: File,
}

impl Watch {
    /// Open `/dev/kmsg` positioned after the newest record.
    pub fn open() -> io::Result<Self> {
        let mut f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(KMSG)?;
        f.seek(SeekFrom::End(0))?;
        Ok(Watch { f })
    }

    /// The messages logged since the last call (or `open`).
    pub fn take(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match self.f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let rec = String::from_utf8_lossy(&buf[..n]);
                    if let Some(t) = record_text(&rec) {
                        out.push(t.to_string());
                    }
                }
                // EPIPE: records were overwritten before we read them; the
                // next read goes on from the oldest one left.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break, // EAGAIN: nothing more for now
            }
        }
        out
    }
}

/// Collect IOMMU DMA write fault reports ("DMAR: [DMA Write") logged after
/// `watch` was opened, until one arrives or `limit` passes. Without a watch
/// (no /dev/kmsg) just wait `limit` and report none.
pub fn wait_for_dma_write_faults(watch: Option<&mut Watch>, limit: Duration) -> Vec<String> {
    let Some(w) = watch else {
        sleep(limit);
        return Vec::new();
    };
    let start = Instant::now();
    let mut faults = Vec::new();
    loop {
        faults.extend(
            w.take()
                .into_iter()
                .filter(|l| l.contains("DMAR: [DMA Write")),
        );
        if !faults.is_empty() || start.elapsed() > limit {
            return faults;
        }
        sleep(Duration::from_millis(20));
    }
}

/// The address in a DMAR fault report ("... fault addr 0x203000 [fault
/// reason 0x05] ..."): the page the IOMMU refused, as the kernel read it from
/// the fault recording register.
pub fn fault_addr(line: &str) -> Option<u64> {
    let (_, rest) = line.split_once("fault addr 0x")?;
    let hex: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    u64::from_str_radix(&hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_addresses() {
        assert_eq!(
            fault_addr(
                "DMAR: [DMA Write NO_PASID] Request device [00:03.0] fault addr 0x203000 \
                 [fault reason 0x05] PTE Write access is not set"
            ),
            Some(0x20_3000)
        );
        assert_eq!(
            fault_addr("DMAR: [DMA Write NO_PASID] fault addr 0xe00000"),
            Some(0xe0_0000)
        );
        assert_eq!(fault_addr("DMAR: DRHD: handling fault status reg 2"), None);
        assert_eq!(fault_addr("fault addr 0x"), None);
    }

    #[test]
    fn record_parsing() {
        assert_eq!(
            record_text("3,812,1234567,-;DMAR: [DMA Write NO_PASID] fault addr 0x203000\n"),
            Some("DMAR: [DMA Write NO_PASID] fault addr 0x203000")
        );
        assert_eq!(record_text("6,1,2,c;text\n SUBSYSTEM=pci\n"), Some("text"));
        assert_eq!(record_text("garbage"), None);
    }
}
