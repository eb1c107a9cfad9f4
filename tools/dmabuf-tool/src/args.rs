//! Command-line parsing (by hand) and the number/size formats the tool reads
//! and prints.

pub const USAGE: &str = "\
usage: dmabuf-tool COMMAND

commands:
  bind                  bind edu, ivshmem and pci-testdev to vfio-pci
  smoke                 in-guest TAP test of the stock single-range dma-buf path
  demo                  the same story, told step by step for a person
  kvm                   in-guest TAP test of KVM_MEM_DMABUF memslots: ivshmem's
                        BAR2 as a VFIO dma-buf behind memslots of a VM (create,
                        delete, refusals), no vCPU run yet
  bar-exporter          in-guest TAP test of rust_dmabuf_bar_exporter: ivshmem's
                        BAR2 exported by a Rust PCI driver, revoked on unbind
  bench                 time MAP_FILE+UNMAP by range count and revoke by
                        importer count (figures for `make bench`, not a test)
  kvm-bench             time an L2 guest's first write to each page of a 2 MiB
                        memslot: anonymous memory (4K pages, THP) against
                        ivshmem's BAR2 as a dma-buf (KVM_MEM_DMABUF; two
                        ranges, one); figures for `make bench`, not a test
  fuzz [--seed N] [--calls N]
                        in-guest TAP test: random and boundary inputs to
                        VFIO_DEVICE_FEATURE_DMA_BUF, IOMMU_IOAS_MAP_FILE,
                        KVM_SET_USER_MEMORY_REGION2 (KVM_MEM_DMABUF) and the
                        samples' ioctls, each result checked against the
                        documented rules (seed 0xdb5eed and 10000 calls in
                        all by default; each interface also stops at a time
                        budget); --seed replays a run
  failnth               in-guest TAP test: each allocation (and iommufd
                        selftest fault point) of VFIO_DEVICE_FEATURE_DMA_BUF,
                        IOMMU_IOAS_MAP_FILE, KVM_SET_USER_MEMORY_REGION2
                        (KVM_MEM_DMABUF) and the samples' ioctls fails in turn
                        through /proc/thread-self/fail-nth; each failure must
                        give ENOMEM, leave nothing behind, and the call must
                        then succeed (needs CONFIG_FAILSLAB and debugfs)
  udmabuf               in-guest TAP test of /dev/udmabuf: the dma-buf's access
                        mode follows its memfds', the refusals, its description
                        (DMABUF_IMPORT_SAMPLE_DESCRIBE) against
                        /proc/self/pagemap, hugetlbfs memfds, edu DMA through
                        IOMMU_IOAS_MAP_FILE of it, KVM_MEM_DMABUF slots of it
  stress                in-guest TAP test: concurrent threads export, MAP_FILE
                        and unmap three-range dma-bufs of ivshmem's BAR2,
                        create and delete KVM_MEM_DMABUF memslots of them, and
                        toggle PCI_COMMAND.MEMORY (revoke, restore); only
                        success or ENODEV while revoked is allowed; sampled
                        edu DMAs must land while decoding is on and not while
                        revoked (10000 iterations or 60 s)
  bufinfo               in-guest TAP test of what /sys/kernel/debug/dma_buf/bufinfo
                        and `inspect` show: buffers of known memory models (a
                        VFIO dma-buf of ivshmem's BAR2 across MAP_FILE, a
                        KVM_MEM_DMABUF slot, a revoke and a restore; the Rust
                        sample's PINNED and DYNAMIC buffers; udmabufs), their
                        importers, what they accept and hold, their holders
  inspect [PID[:FD]]    every dma-buf in the system (or those PID holds, or
                        the one behind its FD): exporter, size, mode, memory
                        model, holders (pid:fd), importers; with
                        dmabuf_import_sample loaded, its description
  try-map [--bar N] [--iova ADDR] RANGES
                        export RANGES of ivshmem's BAR N (default 2) as one
                        dma-buf and try IOMMU_IOAS_MAP_FILE of it at ADDR
                        (default 0x200000); RANGES is OFFSET+LENGTH[,...],
                        numbers in decimal or 0x hex with an optional K/M/G
                        suffix, e.g. 0+4K,64K+4K,1M+4K
  help                  this text
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Bind,
    Smoke,
    Kvm,
    Demo,
    BarExporter,
    Bench,
    KvmBench,
    Fuzz {
        seed: u64,
        calls: u64,
    },
    Failnth,
    Udmabuf,
    Stress,
    Bufinfo,
    Inspect {
        pid: Option<u32>,
        fd: Option<u32>,
    },
    TryMap {
        bar: u32,
        iova: u64,
        ranges: Vec<(u64, u64)>,
    },
    Help,
}

/// Parse "4096", "0x1000", "4K", "0x10K", "2M", "1G".
pub fn parse_u64(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, mult) = match t.as_bytes().last() {
        Some(b'k' | b'K') => (&t[..t.len() - 1], 1u64 << 10),
        Some(b'm' | b'M') => (&t[..t.len() - 1], 1u64 << 20),
        Some(b'g' | b'G') => (&t[..t.len() - 1], 1u64 << 30),
        _ => (t, 1),
    };
    let v = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        u64::from_str_radix(hex, 16)
    } else {
        digits.parse::<u64>()
    }
    .map_err(|_| format!("not a number: {s:?}"))?;
    v.checked_mul(mult)
        .ok_or_else(|| format!("number too large: {s:?}"))
}

/// Parse "OFFSET+LENGTH[,OFFSET+LENGTH...]". Alignment and bounds are left
/// to the kernel: the point of the tool is to see what it says.
pub fn parse_ranges(s: &str) -> Result<Vec<(u64, u64)>, String> {
    if s.trim().is_empty() {
        return Err("empty range list".into());
    }
    s.split(',')
        .map(|r| {
            let (off, len) = r
                .split_once('+')
                .ok_or_else(|| format!("range {r:?} is not OFFSET+LENGTH"))?;
            Ok((parse_u64(off)?, parse_u64(len)?))
        })
        .collect()
}

/// Parse inspect's "PID" or "PID:FD" (decimal).
fn parse_holder(s: &str) -> Result<Command, String> {
    let num = |t: &str| {
        t.parse::<u32>()
            .map_err(|_| format!("not a PID or PID:FD: {s:?}"))
    };
    Ok(match s.split_once(':') {
        None => Command::Inspect {
            pid: Some(num(s)?),
            fd: None,
        },
        Some((p, f)) => Command::Inspect {
            pid: Some(num(p)?),
            fd: Some(num(f)?),
        },
    })
}

/// Parse the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut it = args.iter();
    let cmd = it.next().map(String::as_str);
    let rest: Vec<&String> = it.collect();
    let no_more = |c: Command| {
        if rest.is_empty() {
            Ok(c)
        } else {
            Err(format!("unexpected argument {:?}", rest[0]))
        }
    };
    match cmd {
        None | Some("help" | "-h" | "--help") => Ok(Command::Help),
        Some("bind") => no_more(Command::Bind),
        Some("smoke") => no_more(Command::Smoke),
        Some("kvm") => no_more(Command::Kvm),
        Some("demo") => no_more(Command::Demo),
        Some("bar-exporter") => no_more(Command::BarExporter),
        Some("bench") => no_more(Command::Bench),
        Some("kvm-bench") => no_more(Command::KvmBench),
        Some("failnth") => no_more(Command::Failnth),
        Some("udmabuf") => no_more(Command::Udmabuf),
        Some("stress") => no_more(Command::Stress),
        Some("bufinfo") => no_more(Command::Bufinfo),
        Some("inspect") => match rest[..] {
            [] => Ok(Command::Inspect {
                pid: None,
                fd: None,
            }),
            [a] => parse_holder(a),
            [_, b, ..] => Err(format!("unexpected argument {b:?}")),
        },
        Some("fuzz") => {
            let mut seed = crate::fuzz::DEFAULT_SEED;
            let mut calls = crate::fuzz::DEFAULT_CALLS;
            let mut i = 0;
            while i < rest.len() {
                let a = rest[i].as_str();
                i += 1;
                let v = rest
                    .get(i)
                    .map(|s| s.as_str())
                    .ok_or_else(|| format!("{a} needs a value"));
                match a {
                    "--seed" => seed = parse_u64(v?)?,
                    "--calls" => calls = parse_u64(v?)?,
                    _ => return Err(format!("unexpected argument {a:?}")),
                }
                i += 1;
            }
            Ok(Command::Fuzz { seed, calls })
        }
        Some("try-map") => {
            let mut bar = 2u32;
            let mut iova = 0x20_0000u64;
            let mut ranges = None;
            let mut i = 0;
            while i < rest.len() {
                let a = rest[i].as_str();
                let mut value = || {
                    i += 1;
                    rest.get(i)
                        .map(|s| s.as_str())
                        .ok_or_else(|| format!("{a} needs a value"))
                };
                match a {
                    "--bar" => {
                        let v = value()?;
                        bar = v.parse().map_err(|_| format!("bad BAR number {v:?}"))?;
                    }
                    "--iova" => iova = parse_u64(value()?)?,
                    _ if a.starts_with('-') => return Err(format!("unknown option {a:?}")),
                    _ if ranges.is_none() => ranges = Some(parse_ranges(a)?),
                    _ => return Err(format!("unexpected argument {a:?}")),
                }
                i += 1;
            }
            let ranges = ranges.ok_or("try-map needs RANGES")?;
            Ok(Command::TryMap { bar, iova, ranges })
        }
        Some(other) => Err(format!("unknown command {other:?}")),
    }
}

/// "4 KiB", "2 MiB", or hex when not a whole number of KiB.
pub fn size(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (u, name) in UNITS {
        if n >= u && n % u == 0 {
            return format!("{} {name}", n / u);
        }
    }
    format!("{n:#x} bytes")
}

/// "[0x0, 0x10000)".
pub fn span(start: u64, len: u64) -> String {
    format!("[{start:#x}, {:#x})", start.saturating_add(len))
}

/// The first `max` bytes in hex, with "..." when there are more.
pub fn hex_preview(bytes: &[u8], max: usize) -> String {
    let mut s = bytes
        .iter()
        .take(max)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    if bytes.len() > max {
        s.push_str(" ...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("4096"), Ok(4096));
        assert_eq!(parse_u64("0x1000"), Ok(0x1000));
        assert_eq!(parse_u64("4K"), Ok(4096));
        assert_eq!(parse_u64("64k"), Ok(0x10000));
        assert_eq!(parse_u64("1M"), Ok(0x10_0000));
        assert_eq!(parse_u64("0x2M"), Ok(0x20_0000));
        assert_eq!(parse_u64("1G"), Ok(1 << 30));
        assert_eq!(parse_u64("0"), Ok(0));
        assert!(parse_u64("").is_err());
        assert!(parse_u64("K").is_err());
        assert!(parse_u64("12q").is_err());
        assert!(parse_u64("-1").is_err());
        assert!(parse_u64("0xffffffffffffffffK").is_err());
    }

    #[test]
    fn ranges() {
        assert_eq!(
            parse_ranges("0+4K,64K+4K,1M+4K"),
            Ok(vec![(0, 0x1000), (0x10000, 0x1000), (0x10_0000, 0x1000)])
        );
        assert_eq!(parse_ranges("0x800+0x1000"), Ok(vec![(0x800, 0x1000)]));
        assert_eq!(parse_ranges("0+0"), Ok(vec![(0, 0)]));
        assert!(parse_ranges("").is_err());
        assert!(parse_ranges("0").is_err());
        assert!(parse_ranges("0+4K,").is_err());
        assert!(parse_ranges("a+b").is_err());
    }

    #[test]
    fn commands() {
        assert_eq!(parse(&v(&[])), Ok(Command::Help));
        assert_eq!(parse(&v(&["--help"])), Ok(Command::Help));
        assert_eq!(parse(&v(&["bind"])), Ok(Command::Bind));
        assert_eq!(parse(&v(&["smoke"])), Ok(Command::Smoke));
        assert_eq!(parse(&v(&["kvm"])), Ok(Command::Kvm));
        assert_eq!(parse(&v(&["bar-exporter"])), Ok(Command::BarExporter));
        assert_eq!(parse(&v(&["demo"])), Ok(Command::Demo));
        assert_eq!(parse(&v(&["bench"])), Ok(Command::Bench));
        assert!(parse(&v(&["bench", "x"])).is_err());
        assert_eq!(parse(&v(&["kvm-bench"])), Ok(Command::KvmBench));
        assert!(parse(&v(&["kvm-bench", "x"])).is_err());
        assert!(parse(&v(&["smoke", "extra"])).is_err());
        assert_eq!(
            parse(&v(&["fuzz"])),
            Ok(Command::Fuzz {
                seed: 0xdb5eed,
                calls: 10_000
            })
        );
        assert_eq!(
            parse(&v(&["fuzz", "--calls", "2K", "--seed", "0x1234"])),
            Ok(Command::Fuzz {
                seed: 0x1234,
                calls: 2048
            })
        );
        assert_eq!(
            parse(&v(&["fuzz", "--seed", "42"])),
            Ok(Command::Fuzz {
                seed: 42,
                calls: 10_000
            })
        );
        assert!(parse(&v(&["fuzz", "--seed"])).is_err());
        assert!(parse(&v(&["fuzz", "--seed", "x"])).is_err());
        assert!(parse(&v(&["fuzz", "--rounds", "3"])).is_err());
        assert!(parse(&v(&["fuzz", "7"])).is_err());
        assert_eq!(parse(&v(&["failnth"])), Ok(Command::Failnth));
        assert!(parse(&v(&["failnth", "5"])).is_err());
        assert_eq!(parse(&v(&["udmabuf"])), Ok(Command::Udmabuf));
        assert!(parse(&v(&["udmabuf", "x"])).is_err());
        assert_eq!(parse(&v(&["stress"])), Ok(Command::Stress));
        assert!(parse(&v(&["stress", "60"])).is_err());
        assert_eq!(parse(&v(&["bufinfo"])), Ok(Command::Bufinfo));
        assert!(parse(&v(&["bufinfo", "x"])).is_err());
        assert_eq!(
            parse(&v(&["inspect"])),
            Ok(Command::Inspect {
                pid: None,
                fd: None
            })
        );
        assert_eq!(
            parse(&v(&["inspect", "123"])),
            Ok(Command::Inspect {
                pid: Some(123),
                fd: None
            })
        );
        assert_eq!(
            parse(&v(&["inspect", "123:7"])),
            Ok(Command::Inspect {
                pid: Some(123),
                fd: Some(7)
            })
        );
        assert!(parse(&v(&["inspect", "123:"])).is_err());
        assert!(parse(&v(&["inspect", ":7"])).is_err());
        assert!(parse(&v(&["inspect", "-1"])).is_err());
        assert!(parse(&v(&["inspect", "12:x"])).is_err());
        assert!(parse(&v(&["inspect", "1", "2"])).is_err());
        assert!(parse(&v(&["frobnicate"])).is_err());
        assert_eq!(
            parse(&v(&["try-map", "0+64K"])),
            Ok(Command::TryMap {
                bar: 2,
                iova: 0x20_0000,
                ranges: vec![(0, 0x10000)]
            })
        );
        assert_eq!(
            parse(&v(&[
                "try-map",
                "--bar",
                "0",
                "--iova",
                "0x400000",
                "0+4K,1M+4K"
            ])),
            Ok(Command::TryMap {
                bar: 0,
                iova: 0x40_0000,
                ranges: vec![(0, 0x1000), (0x10_0000, 0x1000)]
            })
        );
        assert!(parse(&v(&["try-map"])).is_err());
        assert!(parse(&v(&["try-map", "--bar"])).is_err());
        assert!(parse(&v(&["try-map", "--bar", "x", "0+4K"])).is_err());
        assert!(parse(&v(&["try-map", "--what", "0+4K"])).is_err());
        assert!(parse(&v(&["try-map", "0+4K", "0+8K"])).is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(size(4096), "4 KiB");
        assert_eq!(size(0x20_0000), "2 MiB");
        assert_eq!(size(1 << 30), "1 GiB");
        assert_eq!(size(0x200), "0x200 bytes");
        assert_eq!(size(0), "0x0 bytes");
        assert_eq!(span(0x3000, 0x200), "[0x3000, 0x3200)");
        assert_eq!(hex_preview(&[1, 0xab, 3], 8), "01 ab 03");
        assert_eq!(hex_preview(&[1, 2, 3], 2), "01 02 ...");
    }
}
