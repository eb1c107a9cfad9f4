//! QEMU's `edu` device: its DMA engine, driven through an mmap of BAR0.
//!
//! Registers (docs/specs/edu.rst): 0x00 id (4-byte reads only), 0x80 DMA
//! source, 0x88 destination, 0x90 count, 0x98 command (bit 0 start, bit 1
//! direction: set = edu buffer to RAM). The 4 KiB buffer sits at 0x40000 in
//! edu's address space. DMA addresses are IOVAs (through the IOMMU), masked
//! to 28 bits by edu. Bus mastering must be on or DMA silently does nothing.

use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::errno::{Error, Result};
use crate::mmap::Mapping;

pub const EDU_ID: u32 = 0x0100_00ed;
/// edu's internal buffer in its own DMA address space.
pub const EDU_BUFFER: u64 = 0x40000;
/// Most bytes we move per DMA. QEMU 7.2's edu aborts the whole VM on a
/// transfer whose edu-side range ends at 0x40fff (an off-by-one in its range
/// check), so stay well inside the buffer.
pub const MAX_DMA: u64 = 0x800;
/// edu's dma_mask is 28 bits: RAM-side IOVAs must lie below this.
pub const DMA_LIMIT: u64 = 1 << 28;
/// How long to wait for one DMA (each takes about 100 ms of edu's timer).
pub const DMA_TIMEOUT: Duration = Duration::from_secs(2);

const REG_ID: usize = 0x00;
const REG_SRC: usize = 0x80;
const REG_DST: usize = 0x88;
const REG_CNT: usize = 0x90;
const REG_CMD: usize = 0x98;
const CMD_START: u64 = 1 << 0;
const CMD_TO_RAM: u64 = 1 << 1;

/// Which way a DMA goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From an IOVA into edu's buffer (command 1).
    ToDevice,
    /// From edu's buffer to an IOVA (command 3).
    ToRam,
}

/// Check one transfer: `edu_addr` in edu's buffer, `iova` on the RAM side.
pub fn validate(edu_addr: u64, iova: u64, count: u64) -> Result<()> {
    if count == 0 || count > MAX_DMA {
        return Err(Error::msg(format!(
            "edu DMA of {count:#x} bytes: must be 1..={MAX_DMA:#x}"
        )));
    }
    // Half the buffer at most, ending strictly before 0x40fff.
    if edu_addr < EDU_BUFFER || edu_addr + count > EDU_BUFFER + MAX_DMA {
        return Err(Error::msg(format!(
            "edu DMA at edu address {edu_addr:#x} (+{count:#x}) leaves [{EDU_BUFFER:#x}, {:#x})",
            EDU_BUFFER + MAX_DMA
        )));
    }
    if iova.checked_add(count).is_none_or(|end| end > DMA_LIMIT) {
        return Err(Error::msg(format!(
            "edu DMA at IOVA {iova:#x} (+{count:#x}) exceeds edu's 28-bit DMA mask"
        )));
    }
    Ok(())
}

/// The command register value for a direction.
pub fn command(dir: Direction) -> u64 {
    match dir {
        Direction::ToDevice => CMD_START,
        Direction::ToRam => CMD_START | CMD_TO_RAM,
    }
}

/// edu's BAR0, checked to be an edu.
#[derive(Debug)]
pub struct Edu {
    bar: Mapping,
}

impl Edu {
    /// Take BAR0's mapping; fails unless the id register says edu.
    pub fn new(bar: Mapping) -> Result<Self> {
        if bar.len() < REG_CMD + 8 {
            return Err(Error::msg(format!(
                "edu BAR0 is only {:#x} bytes",
                bar.len()
            )));
        }
        let id = bar.read_u32(REG_ID);
        if id != EDU_ID {
            return Err(Error::msg(format!(
                "edu id register reads {id:#010x}, expected {EDU_ID:#010x}"
            )));
        }
        Ok(Edu { bar })
    }

    pub fn id(&self) -> u32 {
        self.bar.read_u32(REG_ID)
    }

    /// Copy `count` bytes from `iova` into edu's buffer at `edu_addr`.
    pub fn to_device(&self, iova: u64, edu_addr: u64, count: u64) -> Result<Duration> {
        self.dma(Direction::ToDevice, edu_addr, iova, count)
    }

    /// Copy `count` bytes from edu's buffer at `edu_addr` to `iova`.
    pub fn to_ram(&self, edu_addr: u64, iova: u64, count: u64) -> Result<Duration> {
        self.dma(Direction::ToRam, edu_addr, iova, count)
    }

    /// Start one DMA and wait for edu to clear the start bit.
    fn dma(&self, dir: Direction, edu_addr: u64, iova: u64, count: u64) -> Result<Duration> {
        validate(edu_addr, iova, count)?;
        if self.bar.read_u64(REG_CMD) & CMD_START != 0 {
            return Err(Error::msg("edu: a DMA is still running"));
        }
        let (src, dst) = match dir {
            Direction::ToDevice => (iova, edu_addr),
            Direction::ToRam => (edu_addr, iova),
        };
        self.bar.write_u64(REG_SRC, src);
        self.bar.write_u64(REG_DST, dst);
        self.bar.write_u64(REG_CNT, count);
        let start = Instant::now();
        self.bar.write_u64(REG_CMD, command(dir));
        loop {
            sleep(Duration::from_millis(5));
            if self.bar.read_u64(REG_CMD) & CMD_START == 0 {
                return Ok(start.elapsed());
            }
            if start.elapsed() > DMA_TIMEOUT {
                return Err(Error::msg(format!(
                    "edu DMA {src:#x} -> {dst:#x} ({count:#x} bytes) did not finish in {DMA_TIMEOUT:?}"
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(command(Direction::ToDevice), 1);
        assert_eq!(command(Direction::ToRam), 3);
    }

    #[test]
    fn validation() {
        assert!(validate(EDU_BUFFER, 0x10_0000, 0x800).is_ok());
        assert!(validate(EDU_BUFFER + 0x400, 0x10_0000, 0x400).is_ok());
        // Too long, empty, or outside the safe half of the buffer.
        assert!(validate(EDU_BUFFER, 0x10_0000, 0x801).is_err());
        assert!(validate(EDU_BUFFER, 0x10_0000, 0).is_err());
        assert!(validate(EDU_BUFFER + 0x401, 0x10_0000, 0x400).is_err());
        assert!(validate(EDU_BUFFER - 1, 0x10_0000, 1).is_err());
        // The count that kills QEMU 7.2 is refused.
        assert!(validate(EDU_BUFFER, 0x10_0000, 0x1000).is_err());
        // IOVA beyond the 28-bit mask.
        assert!(validate(EDU_BUFFER, DMA_LIMIT - 0x100, 0x100).is_ok());
        assert!(validate(EDU_BUFFER, DMA_LIMIT - 0x100, 0x101).is_err());
        assert!(validate(EDU_BUFFER, u64::MAX, 1).is_err());
    }
}
