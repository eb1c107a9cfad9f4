//! `dmabuf-tool inspect`: every dma-buf of the system as the kernel shows it
//! in `/sys/kernel/debug/dma_buf/bufinfo`, with who holds it and, when the C
//! import sample is loaded, what `dma_buf_get_memory()` describes.
//!
//! bufinfo (`dma_buf_debug_show()`) prints per buffer a header line (size,
//! f_flags and f_mode in hex, file count, exporter, inode, name), the fences
//! of its reservation object, then (only when the exporter describes its
//! memory) "\tMemory model: <none|pinned|revocable|dynamic>[, revoked]" and,
//! once an exporter broke a rule, "\tMemory error: <text>"; then
//! "\tAttached Devices:", one "\t<device>" line per attachment, each
//! followed, when that importer declared memory models or holds
//! descriptions, by "\t\taccepts: <models>; holds <N> memory descriptions",
//! and "Total <N> devices attached". The parser here takes what it knows and
//! keeps the rest: kernels without the series print no model or importer
//! lines.
//!
//! The processes holding a buffer are found in `/proc/*/fd`: links to
//! "/dmabuf:<name>" (or "anon_inode:dmabuf" on older kernels) whose inode is
//! the buffer's. To describe a buffer another process holds, its descriptor
//! is duplicated with `pidfd_open()` + `pidfd_getfd()` and passed to
//! `DMABUF_IMPORT_SAMPLE_DESCRIBE`.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::args::size;
use crate::errno::{Context, Error, Result};
use crate::import_sample::{self, ranges_str};
use crate::kvm::BUFINFO;
use crate::report::Facts;
use crate::sys::{ImportSampleDescribe, IMPORT_SAMPLE_RANGES};

/// `FMODE_READ` and `FMODE_WRITE` in bufinfo's mode column (`f_mode`).
const FMODE_READ: u32 = 0x1;
const FMODE_WRITE: u32 = 0x2;

/// The device iommufd attaches to dma-bufs with: its misc device.
pub(crate) const IOMMUFD_DEVICE: &str = "iommu";
/// The device KVM attaches with.
pub(crate) const KVM_DEVICE: &str = "kvm";
/// What iommufd and KVM accept (their `memory_models`).
pub(crate) const IOMMUFD_ACCEPTS: [Model; 2] = [Model::Pinned, Model::Revocable];
pub(crate) const KVM_ACCEPTS: [Model; 3] = [Model::Pinned, Model::Revocable, Model::Dynamic];

/// `enum dma_buf_memory_model`, by bufinfo's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Model {
    None,
    Pinned,
    Revocable,
    Dynamic,
    /// A name or number this tool does not know.
    Other(String),
}

impl Model {
    pub(crate) fn from_name(s: &str) -> Model {
        match s {
            "none" => Model::None,
            "pinned" => Model::Pinned,
            "revocable" => Model::Revocable,
            "dynamic" => Model::Dynamic,
            other => Model::Other(other.to_string()),
        }
    }

    /// The model the C sample's DESCRIBE returns (1 pinned, 2 revocable,
    /// 3 dynamic).
    pub(crate) fn from_number(n: u32) -> Model {
        match n {
            0 => Model::None,
            1 => Model::Pinned,
            2 => Model::Revocable,
            3 => Model::Dynamic,
            n => Model::Other(format!("model {n}")),
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Model::None => "none",
            Model::Pinned => "pinned",
            Model::Revocable => "revocable",
            Model::Dynamic => "dynamic",
            Model::Other(s) => s,
        })
    }
}

/// "pinned revocable".
fn model_list(models: &[Model]) -> String {
    models
        .iter()
        .map(Model::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// What an importer declared: the "\t\taccepts: ...; holds N ..." line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Importer {
    pub(crate) accepts: Vec<Model>,
    pub(crate) holds: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attachment {
    pub(crate) device: String,
    /// None when bufinfo prints no importer line for it: an importer that
    /// declares no memory model and holds no description (or an old kernel).
    pub(crate) importer: Option<Importer>,
}

/// One buffer of bufinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Buffer {
    pub(crate) size: u64,
    /// `f_flags` and `f_mode` of its file.
    pub(crate) flags: u32,
    pub(crate) mode: u32,
    pub(crate) count: i64,
    pub(crate) exp_name: String,
    pub(crate) ino: u64,
    pub(crate) name: String,
    /// None without a "Memory model:" line.
    pub(crate) model: Option<Model>,
    pub(crate) revoked: bool,
    pub(crate) error: Option<String>,
    pub(crate) attachments: Vec<Attachment>,
    /// "Total N devices attached", if the entry got that far.
    pub(crate) attached: Option<usize>,
    /// Lines this parser does not know (the reservation object's fences).
    pub(crate) other: Vec<String>,
}

impl Buffer {
    /// "rw", "ro", "wo" or "--", from `f_mode`.
    pub(crate) fn access(&self) -> &'static str {
        match (self.mode & FMODE_READ != 0, self.mode & FMODE_WRITE != 0) {
            (true, true) => "rw",
            (true, false) => "ro",
            (false, true) => "wo",
            (false, false) => "--",
        }
    }

    /// "revocable", "revocable, revoked", or "no memory model line".
    pub(crate) fn state(&self) -> String {
        state(self.model.as_ref(), self.revoked)
    }

    /// The attachments of `device`.
    pub(crate) fn attached_as(&self, device: &str) -> Vec<&Attachment> {
        self.attachments
            .iter()
            .filter(|a| a.device == device)
            .collect()
    }

    /// Parses a header line: "%08zu\t%08x\t%08x\t%08ld\t%s\t%08llu\t%s".
    fn header(line: &str) -> Option<Buffer> {
        let mut f = line.splitn(7, '\t');
        let size = f.next()?.trim().parse().ok()?;
        let flags = u32::from_str_radix(f.next()?.trim(), 16).ok()?;
        let mode = u32::from_str_radix(f.next()?.trim(), 16).ok()?;
        let count = f.next()?.trim().parse().ok()?;
        let exp_name = f.next()?.to_string();
        let ino = f.next()?.trim().parse().ok()?;
        Some(Buffer {
            size,
            flags,
            mode,
            count,
            exp_name,
            ino,
            name: f.next().unwrap_or("").to_string(),
            model: None,
            revoked: false,
            error: None,
            attachments: Vec::new(),
            attached: None,
            other: Vec::new(),
        })
    }
}

/// What the model line says, as [`Buffer::state`] puts it.
fn state(model: Option<&Model>, revoked: bool) -> String {
    match model {
        None => "no memory model line".to_string(),
        Some(m) if revoked => format!("{m}, revoked"),
        Some(m) => m.to_string(),
    }
}

/// "\t\taccepts: pinned revocable; holds 1 memory descriptions".
fn importer_line(rest: &str) -> Option<Importer> {
    let (models, holds) = rest.split_once(';')?;
    let holds = holds
        .trim()
        .strip_prefix("holds")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(Importer {
        accepts: models.split_whitespace().map(Model::from_name).collect(),
        holds,
    })
}

/// The number in "Total <N> <what>".
fn total<T: std::str::FromStr>(line: &str, what: &str) -> Option<T> {
    let (n, rest) = line.strip_prefix("Total ")?.split_once(' ')?;
    rest.starts_with(what).then(|| n.parse().ok())?
}

/// All of bufinfo.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Bufinfo {
    pub(crate) buffers: Vec<Buffer>,
    /// "Total N objects, B bytes".
    pub(crate) objects: Option<usize>,
    pub(crate) bytes: Option<u64>,
}

impl Bufinfo {
    /// Parses what it knows of `text` and keeps the rest of each entry.
    pub(crate) fn parse(text: &str) -> Bufinfo {
        let mut info = Bufinfo::default();
        // Inside the current entry's "Attached Devices:" list.
        let mut in_devices = false;
        for line in text.lines() {
            if let Some(b) = Buffer::header(line) {
                info.buffers.push(b);
                in_devices = false;
                continue;
            }
            if let Some(n) = total(line, "objects") {
                info.objects = Some(n);
                info.bytes = line
                    .split_once(", ")
                    .and_then(|(_, b)| b.strip_suffix(" bytes")?.parse().ok());
                continue;
            }
            let Some(b) = info.buffers.last_mut() else {
                continue;
            };
            if let Some(n) = total(line, "devices attached") {
                b.attached = Some(n);
                in_devices = false;
            } else if let Some(rest) = line.strip_prefix("\t\taccepts:") {
                match (b.attachments.last_mut(), importer_line(rest)) {
                    (Some(a), Some(i)) if in_devices => a.importer = Some(i),
                    _ => b.other.push(line.to_string()),
                }
            } else if let Some(rest) = line.strip_prefix("\tMemory model:") {
                let mut parts = rest.split(',').map(str::trim);
                b.model = parts.next().map(Model::from_name);
                b.revoked = parts.any(|p| p == "revoked");
            } else if let Some(rest) = line.strip_prefix("\tMemory error:") {
                b.error = Some(rest.trim().to_string());
            } else if line == "\tAttached Devices:" {
                in_devices = true;
            } else if let Some(dev) = line
                .strip_prefix('\t')
                .filter(|d| in_devices && !d.is_empty())
            {
                if dev.starts_with('\t') {
                    b.other.push(line.to_string());
                } else {
                    b.attachments.push(Attachment {
                        device: dev.to_string(),
                        importer: None,
                    });
                }
            } else if b.attached.is_none() && !line.is_empty() {
                b.other.push(line.to_string());
            }
        }
        info
    }

    pub(crate) fn read() -> Result<Bufinfo> {
        let text = std::fs::read_to_string(BUFINFO).op(format!("read {BUFINFO}"))?;
        Ok(Bufinfo::parse(&text))
    }

    pub(crate) fn by_ino(&self, ino: u64) -> Option<&Buffer> {
        self.buffers.iter().find(|b| b.ino == ino)
    }
}

// ---------------------------------------------------------------------------
// Who holds which buffer

/// A descriptor of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Holder {
    pub(crate) pid: i32,
    pub(crate) fd: RawFd,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.pid, self.fd)
    }
}

/// Whether a `/proc/PID/fd` link names a dma-buf (dmabuffs_dname(): "/dmabuf:<name>").
pub(crate) fn is_dmabuf_link(target: &str) -> bool {
    target.starts_with("/dmabuf:") || target.starts_with("anon_inode:dmabuf")
}

/// The inode of the file behind `fd` (fstat), bufinfo's ino.
pub(crate) fn ino_of(fd: BorrowedFd<'_>) -> Result<u64> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `struct stat` to the pointer, which points to
    // one, and reads nothing else.
    let rc = unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) };
    if rc < 0 {
        return Err(Error::io("fstat", io::Error::last_os_error()));
    }
    // SAFETY: fstat succeeded and filled it in.
    Ok(unsafe { st.assume_init() }.st_ino)
}

/// `/proc/PID/fd/FD`, if it is a dma-buf: its inode.
fn dmabuf_ino(pid: i32, fd: RawFd) -> Option<u64> {
    let path = format!("/proc/{pid}/fd/{fd}");
    let target = std::fs::read_link(&path).ok()?;
    is_dmabuf_link(&target.to_string_lossy())
        .then(|| std::fs::metadata(&path).ok().map(|m| m.ino()))?
}

/// The numeric entries of a /proc directory.
fn numbers(dir: &str) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<i32> = rd
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

/// Every dma-buf descriptor of every process we may look at, by inode,
/// each list sorted.
pub(crate) fn holders() -> BTreeMap<u64, Vec<Holder>> {
    let mut m: BTreeMap<u64, Vec<Holder>> = BTreeMap::new();
    for pid in numbers("/proc") {
        for fd in numbers(&format!("/proc/{pid}/fd")) {
            if let Some(ino) = dmabuf_ino(pid, fd) {
                m.entry(ino).or_default().push(Holder { pid, fd });
            }
        }
    }
    m
}

/// The command name of `pid`, "?" if it is gone.
fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// A new descriptor (O_CLOEXEC) of the file `h` names: `pidfd_open()` and
/// `pidfd_getfd()`, which need ptrace access to the process.
pub(crate) fn duplicate(h: Holder) -> Result<OwnedFd> {
    // SAFETY: pidfd_open(pid, flags) reads no memory; it returns a new
    // descriptor or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::c_long::from(h.pid), 0) };
    if pidfd < 0 {
        return Err(Error::io(
            format!("pidfd_open({})", h.pid),
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: the descriptor is new and nothing else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
    // SAFETY: pidfd_getfd(pidfd, targetfd, flags) reads no memory; it
    // returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_pidfd_getfd,
            libc::c_long::from(pidfd.as_raw_fd()),
            libc::c_long::from(h.fd),
            0,
        )
    };
    if fd < 0 {
        return Err(Error::io(
            format!("pidfd_getfd({h})"),
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// DESCRIBE, by the C sample `dev`, of the buffer of inode `ino` that `h`
/// holds, through a duplicate of `h`'s descriptor.
pub(crate) fn describe_holder(dev: &File, h: Holder, ino: u64) -> Result<ImportSampleDescribe> {
    let fd = duplicate(h)?;
    let got = ino_of(fd.as_fd())?;
    if got != ino {
        return Err(Error::msg(format!(
            "{h} is now inode {got}, not the buffer's {ino}"
        )));
    }
    import_sample::describe(dev, &fd)
}

/// What DESCRIBE said of a buffer.
#[derive(Debug)]
pub(crate) enum Described {
    Got(ImportSampleDescribe),
    Failed(String),
}

/// "revocable, 2 MiB in 1 chunk, 2 ranges: 0x...+0x100000 ...".
pub(crate) fn description(d: &ImportSampleDescribe) -> String {
    let nr = d.nr_ranges as usize;
    let shown = nr.min(IMPORT_SAMPLE_RANGES);
    format!(
        "{}, {} in {} chunk(s), {nr} range(s): {}{}",
        Model::from_number(d.model),
        size(d.size),
        d.nr_chunks,
        ranges_str(&d.ranges[..shown]),
        if nr > shown { " ..." } else { "" }
    )
}

// ---------------------------------------------------------------------------
// The report

/// Which buffers a report shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    All,
    /// Those a process holds.
    Pid(i32),
    /// The one behind a descriptor of a process.
    Fd(Holder),
    /// These, each of which must be in bufinfo.
    Inodes(Vec<u64>),
}

/// One buffer, who holds it, what DESCRIBE said (None: not asked).
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) buf: Buffer,
    pub(crate) holders: Vec<Holder>,
    pub(crate) described: Option<Described>,
}

impl Entry {
    /// The buffer's view: a line for the buffer, then indented details.
    pub(crate) fn lines(&self) -> Vec<String> {
        let b = &self.buf;
        let mut v = vec![format!(
            "dma-buf ino {}: {}, {}, {}, {}{}",
            b.ino,
            b.exp_name,
            size(b.size),
            b.access(),
            b.state(),
            if b.name.is_empty() || b.name == "<none>" {
                String::new()
            } else {
                format!(", name {:?}", b.name)
            }
        )];
        if let Some(e) = &b.error {
            v.push(format!("  memory error: {e}"));
        }
        v.push(if self.holders.is_empty() {
            "  held by: no process (only the kernel or an importer keeps it)".into()
        } else {
            let hs: Vec<String> = self
                .holders
                .iter()
                .map(|h| format!("{h} ({})", comm(h.pid)))
                .collect();
            format!("  held by: {}", hs.join(", "))
        });
        if b.attachments.is_empty() {
            v.push("  attached: nothing".into());
        }
        for a in &b.attachments {
            v.push(match &a.importer {
                Some(i) => format!(
                    "  attached: {}, accepts {}, holds {} memory description(s)",
                    a.device,
                    if i.accepts.is_empty() {
                        "no model".to_string()
                    } else {
                        model_list(&i.accepts)
                    },
                    i.holds
                ),
                None => format!("  attached: {} (declares no memory model)", a.device),
            });
        }
        match &self.described {
            Some(Described::Got(d)) => v.push(format!("  described: {}", description(d))),
            Some(Described::Failed(e)) => v.push(format!("  not described: {e}")),
            None => {}
        }
        v
    }
}

/// Buffers of bufinfo with their holders and descriptions.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) entries: Vec<Entry>,
    pub(crate) objects: Option<usize>,
    pub(crate) bytes: Option<u64>,
    /// Why there are no descriptions, if there are none.
    pub(crate) no_sample: Option<String>,
}

/// DESCRIBE through the first of `holders` that works; the last error.
fn describe_any(dev: &File, holders: &[Holder], ino: u64) -> Described {
    let mut why = "no process holds a descriptor of it".to_string();
    for &h in holders {
        match describe_holder(dev, h, ino) {
            Ok(d) => return Described::Got(d),
            Err(e) => why = e.to_string(),
        }
    }
    Described::Failed(why)
}

impl Report {
    pub(crate) fn gather(target: &Target) -> Result<Report> {
        let info = Bufinfo::read()?;
        let held = holders();
        let wanted: Vec<u64> = match target {
            Target::All => info.buffers.iter().map(|b| b.ino).collect(),
            Target::Pid(pid) => info
                .buffers
                .iter()
                .map(|b| b.ino)
                .filter(|i| held.get(i).is_some_and(|v| v.iter().any(|h| h.pid == *pid)))
                .collect(),
            Target::Fd(h) => vec![dmabuf_ino(h.pid, h.fd)
                .ok_or_else(|| Error::msg(format!("{h} is not a dma-buf descriptor")))?],
            Target::Inodes(v) => v.clone(),
        };
        let (sample, no_sample) = if Path::new(import_sample::DEVICE).exists() {
            match import_sample::open() {
                Ok(dev) => (Some(dev), None),
                Err(e) => (None, Some(e.to_string())),
            }
        } else {
            (
                None,
                Some(format!(
                    "no {}: dmabuf_import_sample is not loaded",
                    import_sample::DEVICE
                )),
            )
        };
        let mut entries = Vec::new();
        for ino in wanted {
            let buf = info
                .by_ino(ino)
                .ok_or_else(|| Error::msg(format!("no dma-buf of inode {ino} in {BUFINFO}")))?
                .clone();
            let holders = held.get(&ino).cloned().unwrap_or_default();
            let described = sample.as_ref().map(|dev| describe_any(dev, &holders, ino));
            entries.push(Entry {
                buf,
                holders,
                described,
            });
        }
        Ok(Report {
            entries,
            objects: info.objects,
            bytes: info.bytes,
            no_sample,
        })
    }

    pub(crate) fn entry(&self, ino: u64) -> Option<&Entry> {
        self.entries.iter().find(|e| e.buf.ino == ino)
    }

    /// Everything, for `dmabuf-tool inspect`.
    pub(crate) fn lines(&self) -> Vec<String> {
        let mut v = vec![format!(
            "{} dma-buf(s) shown; {BUFINFO}: {} objects, {} bytes in all",
            self.entries.len(),
            self.objects.map_or("?".into(), |n| n.to_string()),
            self.bytes.map_or("?".into(), |n| n.to_string()),
        )];
        if let Some(why) = &self.no_sample {
            v.push(format!("(no descriptions: {why})"));
        }
        for e in &self.entries {
            v.push(String::new());
            v.extend(e.lines());
        }
        v
    }
}

/// `dmabuf-tool inspect [PID[:FD]]`.
pub fn run(pid: Option<u32>, fd: Option<u32>) -> Result<()> {
    let as_i32 = |n: u32| i32::try_from(n).map_err(|_| Error::msg(format!("{n} is too large")));
    let target = match (pid, fd) {
        (None, _) => Target::All,
        (Some(p), None) => Target::Pid(as_i32(p)?),
        (Some(p), Some(f)) => Target::Fd(Holder {
            pid: as_i32(p)?,
            fd: as_i32(f)?,
        }),
    };
    for l in Report::gather(&target)?.lines() {
        println!("{l}");
    }
    Ok(())
}

/// The inspect view of the buffers behind our descriptors `fds`, into `f`;
/// their bufinfo entries, in the same order.
pub(crate) fn show_fds(fds: &[BorrowedFd<'_>], f: &mut Facts) -> Result<Vec<Buffer>> {
    let inos = fds
        .iter()
        .map(|fd| ino_of(*fd))
        .collect::<Result<Vec<_>>>()?;
    let report = Report::gather(&Target::Inodes(inos))?;
    for e in &report.entries {
        for l in e.lines() {
            f.add(l);
        }
    }
    Ok(report.entries.into_iter().map(|e| e.buf).collect())
}

// ---------------------------------------------------------------------------
// Checks of an entry

/// `b` shows "Memory model: `model`", with ", revoked" iff `revoked`, and no
/// memory error.
pub(crate) fn expect_model(b: &Buffer, model: Model, revoked: bool) -> Result<()> {
    if b.model.as_ref() != Some(&model) || b.revoked != revoked {
        return Err(Error::msg(format!(
            "bufinfo shows {}, expected {}",
            b.state(),
            state(Some(&model), revoked)
        )));
    }
    if let Some(e) = &b.error {
        return Err(Error::msg(format!("bufinfo shows a memory error: {e}")));
    }
    Ok(())
}

/// `device` is attached to `b` once, declares `accepts` and holds one of
/// `holds` memory descriptions; returns how many it holds.
pub(crate) fn expect_importer(
    b: &Buffer,
    device: &str,
    accepts: &[Model],
    holds: &[u32],
) -> Result<u32> {
    let found = b.attached_as(device);
    let [a] = found[..] else {
        return Err(Error::msg(format!(
            "{} attachment(s) of {device}, expected 1",
            found.len()
        )));
    };
    let Some(i) = &a.importer else {
        return Err(Error::msg(format!(
            "bufinfo shows no accepts/holds line for {device}"
        )));
    };
    if i.accepts != accepts {
        return Err(Error::msg(format!(
            "{device} accepts {:?}, expected {:?}",
            model_list(&i.accepts),
            model_list(accepts)
        )));
    }
    if !holds.contains(&i.holds) {
        return Err(Error::msg(format!(
            "{device} holds {} memory description(s), expected {}",
            i.holds,
            holds
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" or ")
        )));
    }
    Ok(i.holds)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: &str = "\nDma-buf Objects:\n\
        size    \tflags   \tmode    \tcount   \texp_name\tino     \tname\n\
        02097152\t00000002\t000a001f\t00000003\tvfio_pci_core\t00000042\t<none>\n\
        \tMemory model: revocable, revoked\n\
        \tAttached Devices:\n\
        \tiommu\n\
        \t\taccepts: pinned revocable; holds 0 memory descriptions\n\
        \tkvm\n\
        \t\taccepts: pinned revocable dynamic; holds 0 memory descriptions\n\
        Total 2 devices attached\n\n\
        00016384\t00000002\t000a001f\t00000001\trust_dmabuf_exporter\t00000043\tmy buf\n\
        \twrite fence:12:3 foo bar unsignalled\n\
        \tMemory model: pinned\n\
        \tMemory error: a range is not page aligned\n\
        \tAttached Devices:\n\
        \tdmabuf_import_sample\n\
        \t\taccepts:; holds 2 memory descriptions\n\
        \tplatform-dev\n\
        Total 2 devices attached\n\n\
        00016384\t00000000\t000a001d\t00000001\tudmabuf\t00000044\t<none>\n\
        \tMemory model: pinned\n\
        \tAttached Devices:\n\
        Total 0 devices attached\n\n\
        00004096\t00000002\t000a001f\t00000001\told_exporter\t00000045\t<none>\n\
        \tread fence:1:1 drv tl signalled\n\
        \tAttached Devices:\n\
        \tsome-gpu\n\
        Total 1 devices attached\n\n\
        \nTotal 4 objects, 2134016 bytes\n";

    #[test]
    fn new_format() {
        let info = Bufinfo::parse(NEW);
        assert_eq!(info.objects, Some(4));
        assert_eq!(info.bytes, Some(2_134_016));
        assert_eq!(info.buffers.len(), 4);

        let v = info.by_ino(42).unwrap();
        assert_eq!((v.size, v.flags, v.mode, v.count), (2 << 20, 2, 0xa001f, 3));
        assert_eq!(v.exp_name, "vfio_pci_core");
        assert_eq!(v.name, "<none>");
        assert_eq!(v.access(), "rw");
        assert_eq!(v.model, Some(Model::Revocable));
        assert!(v.revoked);
        assert_eq!(v.state(), "revocable, revoked");
        assert_eq!(v.attached, Some(2));
        assert_eq!(
            v.attachments,
            [
                Attachment {
                    device: "iommu".into(),
                    importer: Some(Importer {
                        accepts: vec![Model::Pinned, Model::Revocable],
                        holds: 0
                    })
                },
                Attachment {
                    device: "kvm".into(),
                    importer: Some(Importer {
                        accepts: vec![Model::Pinned, Model::Revocable, Model::Dynamic],
                        holds: 0
                    })
                },
            ]
        );
        assert!(v.other.is_empty());

        let r = info.by_ino(43).unwrap();
        assert_eq!(r.name, "my buf");
        assert_eq!(r.model, Some(Model::Pinned));
        assert!(!r.revoked);
        assert_eq!(r.error.as_deref(), Some("a range is not page aligned"));
        assert_eq!(r.other, ["\twrite fence:12:3 foo bar unsignalled"]);
        // An importer without models that still holds descriptions; one
        // without any line.
        assert_eq!(
            r.attachments[0].importer,
            Some(Importer {
                accepts: vec![],
                holds: 2
            })
        );
        assert_eq!(r.attachments[1].device, "platform-dev");
        assert_eq!(r.attachments[1].importer, None);

        let u = info.by_ino(44).unwrap();
        assert_eq!(u.access(), "ro");
        assert_eq!(u.state(), "pinned");
        assert!(u.attachments.is_empty());
        assert_eq!(u.attached, Some(0));

        // A buffer whose exporter does not describe its memory.
        let o = info.by_ino(45).unwrap();
        assert_eq!(o.model, None);
        assert_eq!(o.state(), "no memory model line");
        assert_eq!(o.attachments.len(), 1);
        assert_eq!(o.attachments[0].importer, None);
        assert_eq!(o.other, ["\tread fence:1:1 drv tl signalled"]);
        assert!(info.by_ino(46).is_none());
    }

    #[test]
    fn old_format() {
        // Linux 7.3 as it is: no model, no importer lines.
        let text = "\nDma-buf Objects:\nsize    \tflags   \tmode    \tcount   \texp_name\tino     \tname\n\
                    00065536\t00000002\t00080007\t00000002\tvfio_pci\t00000042\t<none>\n\
                    \tAttached Devices:\n\tkvm\n\tkvm\nTotal 2 devices attached\n\n\
                    \nTotal 1 objects, 65536 bytes\n";
        let info = Bufinfo::parse(text);
        assert_eq!((info.objects, info.bytes), (Some(1), Some(65536)));
        let b = &info.buffers[0];
        assert_eq!((b.ino, b.size, b.access()), (42, 65536, "rw"));
        assert_eq!(
            (b.model.clone(), b.revoked, b.error.clone()),
            (None, false, None)
        );
        assert_eq!(b.attached_as("kvm").len(), 2);
        assert!(b.attachments.iter().all(|a| a.importer.is_none()));
        assert!(b.other.is_empty());
    }

    #[test]
    fn odd_input() {
        assert_eq!(Bufinfo::parse(""), Bufinfo::default());
        assert_eq!(
            Bufinfo::parse("nothing\n\tkvm\nTotal x objects"),
            Bufinfo::default()
        );
        // Cut off after the attachments: what was read is kept.
        let cut = "00004096\t00000002\t00000003\t00000001\tx\t00000007\t<none>\n\
                   \tMemory model: dynamic\n\tAttached Devices:\n\tkvm\n\t\taccepts: pinned";
        let info = Bufinfo::parse(cut);
        let b = &info.buffers[0];
        assert_eq!(b.model, Some(Model::Dynamic));
        assert_eq!(b.attached, None);
        assert_eq!(b.attached_as("kvm")[0].importer, None);
        assert_eq!(b.other, ["\t\taccepts: pinned"]);
        assert_eq!(info.objects, None);
        // Unknown model names and flags are kept, "revoked" found anywhere.
        let info = Bufinfo::parse(
            "00004096\t00000002\t00000003\t00000001\tx\t00000007\n\
             \tMemory model: strange, later, revoked\n",
        );
        let b = &info.buffers[0];
        assert_eq!(b.name, "");
        assert_eq!(b.model, Some(Model::Other("strange".into())));
        assert!(b.revoked);
        // A header without an inode is not a header.
        assert!(
            Bufinfo::parse("00004096\t00000002\t00000003\t00000001\tx\n")
                .buffers
                .is_empty()
        );
    }

    #[test]
    fn models() {
        for (n, name) in [(0, "none"), (1, "pinned"), (2, "revocable"), (3, "dynamic")] {
            assert_eq!(Model::from_number(n), Model::from_name(name));
            assert_eq!(Model::from_number(n).to_string(), name);
        }
        assert_eq!(Model::from_number(9).to_string(), "model 9");
        assert_eq!(
            model_list(&[Model::Pinned, Model::Dynamic]),
            "pinned dynamic"
        );
    }

    #[test]
    fn links() {
        assert!(is_dmabuf_link("/dmabuf:"));
        assert!(is_dmabuf_link("/dmabuf:my buf"));
        assert!(is_dmabuf_link("anon_inode:dmabuf"));
        assert!(!is_dmabuf_link("/memfd:dmabuf (deleted)"));
        assert!(!is_dmabuf_link("anon_inode:[eventfd]"));
        assert!(!is_dmabuf_link("/dev/dma_heap/system"));
    }

    #[test]
    fn views() {
        let info = Bufinfo::parse(NEW);
        let mut d = ImportSampleDescribe {
            model: 2,
            nr_chunks: 1,
            nr_ranges: 5,
            size: 2 << 20,
            ..Default::default()
        };
        for (i, r) in d.ranges.iter_mut().enumerate() {
            r.paddr = 0xfe00_0000 + i as u64 * 0x1000;
            r.len = 0x1000;
        }
        let e = Entry {
            buf: info.by_ino(42).unwrap().clone(),
            holders: vec![Holder { pid: 1, fd: 7 }],
            described: Some(Described::Got(d)),
        };
        let l = e.lines();
        assert_eq!(
            l[0],
            "dma-buf ino 42: vfio_pci_core, 2 MiB, rw, revocable, revoked"
        );
        assert!(l[1].starts_with("  held by: 1:7 ("), "{}", l[1]);
        assert_eq!(
            l[2..],
            [
                "  attached: iommu, accepts pinned revocable, holds 0 memory description(s)",
                "  attached: kvm, accepts pinned revocable dynamic, holds 0 memory description(s)",
                "  described: revocable, 2 MiB in 1 chunk(s), 5 range(s): 0xfe000000+0x1000 \
                 0xfe001000+0x1000 0xfe002000+0x1000 0xfe003000+0x1000 ...",
            ]
        );
        let e = Entry {
            buf: info.by_ino(43).unwrap().clone(),
            holders: vec![],
            described: Some(Described::Failed("ENODEV".into())),
        };
        assert_eq!(
            e.lines(),
            [
                "dma-buf ino 43: rust_dmabuf_exporter, 16 KiB, rw, pinned, name \"my buf\"",
                "  memory error: a range is not page aligned",
                "  held by: no process (only the kernel or an importer keeps it)",
                "  attached: dmabuf_import_sample, accepts no model, holds 2 memory description(s)",
                "  attached: platform-dev (declares no memory model)",
                "  not described: ENODEV",
            ]
        );
        let e = Entry {
            buf: info.by_ino(44).unwrap().clone(),
            holders: vec![],
            described: None,
        };
        assert_eq!(e.lines()[2], "  attached: nothing");
        assert_eq!(e.lines().len(), 3);
    }

    #[test]
    fn entry_checks() {
        let info = Bufinfo::parse(NEW);
        let v = info.by_ino(42).unwrap();
        assert!(expect_model(v, Model::Revocable, true).is_ok());
        let e = expect_model(v, Model::Revocable, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bufinfo shows revocable, revoked, expected revocable"
        );
        let both = [Model::Pinned, Model::Revocable];
        assert_eq!(expect_importer(v, "iommu", &both, &[0]).unwrap(), 0);
        let e = expect_importer(v, "iommu", &both, &[1]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "iommu holds 0 memory description(s), expected 1"
        );
        assert!(expect_importer(v, "kvm", &both, &[0]).is_err());
        let e = expect_importer(v, "vfio", &both, &[0]).unwrap_err();
        assert_eq!(e.to_string(), "0 attachment(s) of vfio, expected 1");
        let r = info.by_ino(43).unwrap();
        let e = expect_model(r, Model::Pinned, false).unwrap_err();
        assert!(e.to_string().contains("memory error"), "{e}");
        let o = info.by_ino(45).unwrap();
        let e = expect_importer(o, "some-gpu", &[], &[0]).unwrap_err();
        assert!(e.to_string().contains("no accepts/holds line"), "{e}");
    }

    #[test]
    fn own_descriptors() {
        // Not a dma-buf: found by inode, never listed as one.
        let m = crate::sys::memfd_create(c"inspect-test").unwrap();
        let ino = ino_of(m.as_fd()).unwrap();
        let me = std::process::id() as i32;
        assert_eq!(
            std::fs::metadata(format!("/proc/{me}/fd/{}", m.as_raw_fd()))
                .unwrap()
                .ino(),
            ino
        );
        assert_eq!(dmabuf_ino(me, m.as_raw_fd()), None);
        assert!(!holders().contains_key(&ino));
        // pidfd_getfd of our own descriptor: the same file.
        match duplicate(Holder {
            pid: me,
            fd: m.as_raw_fd(),
        }) {
            Ok(d) => assert_eq!(ino_of(d.as_fd()).unwrap(), ino),
            // Kernels before 5.6, or seccomp in a container.
            Err(e) => assert!(matches!(e.errno(), Some(libc::ENOSYS | libc::EPERM)), "{e}"),
        }
        assert!(numbers("/proc").contains(&me));
    }
}
