//! Generates the uAPI that neither rust-vmm crate has from the headers of the
//! kernel under test: `bindgen` over the patched build tree's `usr/include`
//! (`make headers`, which scripts/kernel.sh runs) for what the series adds to
//! `linux/kvm.h` and for `linux/udmabuf.h`, and over the C import sample's
//! `samples/c/dmabuf_import_sample.h`. The tool then always matches the kernel
//! it tests: a field the series renames or moves breaks the tool's build, not
//! its results.
//!
//! The headers are found in `$DMABUF_UAPI_INCLUDE`, else `$KBUILD/usr/include`,
//! else the `usr/include` of the cache's current build tree
//! (`$DMABUF_CACHE/current-build`). `$BINDGEN` names the bindgen binary
//! (scripts/deps.sh installs a pinned bindgen-cli), and libclang comes from
//! `$LIBCLANG_PATH` as for the kernel's own Rust build.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What is generated: the types, and the `#define`s bindgen can evaluate
/// (constants, not the `_IOW`/`_IOWR` ioctl numbers, which are function-like
/// macros; src/sys.rs encodes those and tests them).
const TYPES: &str =
    "kvm_userspace_memory_region2|udmabuf_create(_item|_list)?|dmabuf_import_sample_.*";
const VARS: &str = "KVM_MEM_DMABUF|KVM_CAP_DMABUF_MEMSLOT|UDMABUF_FLAGS_CLOEXEC|DMABUF_IMPORT_SAMPLE_(RANGES|MAP_PCI)";

fn cache_dir() -> Option<PathBuf> {
    if let Some(c) = env::var_os("DMABUF_CACHE") {
        return Some(c.into());
    }
    let base = env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("dmabuf-memory"))
}

fn uapi_include() -> PathBuf {
    if let Some(dir) = env::var_os("DMABUF_UAPI_INCLUDE") {
        return dir.into();
    }
    if let Some(kbuild) = env::var_os("KBUILD") {
        return Path::new(&kbuild).join("usr/include");
    }
    let current = cache_dir().map(|c| c.join("current-build"));
    if let Some(tree) = current.as_deref().and_then(|p| fs::read_to_string(p).ok()) {
        return Path::new(tree.trim()).join("usr/include");
    }
    panic!(
        "no uAPI headers of the patched kernel: set KBUILD (or DMABUF_UAPI_INCLUDE), \
         or build the kernel first (make kernel)"
    );
}

fn main() {
    for var in [
        "DMABUF_UAPI_INCLUDE",
        "KBUILD",
        "DMABUF_CACHE",
        "BINDGEN",
        "LIBCLANG_PATH",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let sample = manifest.join("../../samples/c/dmabuf_import_sample.h");
    let inc = uapi_include();
    let headers = [
        inc.join("linux/kvm.h"),
        inc.join("linux/udmabuf.h"),
        sample.clone(),
    ];
    for h in &headers {
        assert!(
            h.is_file(),
            "{} is missing: rebuild the kernel (make kernel)",
            h.display()
        );
        println!("cargo:rerun-if-changed={}", h.display());
    }
    // A kernel without the series' KVM uAPI would give a tool that does not
    // build for want of kvm_userspace_memory_region2::dmabuf_fd; say why.
    let kvm_h = fs::read_to_string(&headers[0]).unwrap();
    assert!(
        kvm_h.contains("KVM_MEM_DMABUF"),
        "{} has no KVM_MEM_DMABUF: these are not the series' headers",
        headers[0].display()
    );

    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let wrapper = out.join("uapi.h");
    let wrapped: String = headers
        .iter()
        .map(|h| format!("#include \"{}\"\n", h.display()))
        .collect();
    fs::write(&wrapper, wrapped).unwrap();

    let bindgen = env::var_os("BINDGEN").unwrap_or_else(|| "bindgen".into());
    let rs = out.join("uapi.rs");
    let status = Command::new(&bindgen)
        .arg(&wrapper)
        .arg("--output")
        .arg(&rs)
        .args(["--allowlist-type", TYPES, "--allowlist-var", VARS])
        .args([
            "--with-derive-default",
            "--with-derive-partialeq",
            "--with-derive-eq",
        ])
        .arg("--")
        .arg("-nostdinc")
        .arg("-isystem")
        .arg(&inc)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (scripts/deps.sh installs bindgen-cli)",
                Path::new(&bindgen).display()
            )
        });
    assert!(status.success(), "bindgen failed on {}", wrapper.display());
}
