//! Errno names and the tool's error type.
//!
//! The table is our own (not `strerror`) so messages read the same on musl,
//! glibc and in host tests: "IOMMU_IOAS_MAP_FILE: ENODEV (No such device)".

use std::borrow::Cow;
use std::fmt;
use std::io;

/// (number, name, description) for the errnos the kernel paths we drive can
/// return. Numbers are the x86_64 (asm-generic) values.
const TABLE: &[(i32, &str, &str)] = &[
    (libc::EPERM, "EPERM", "Operation not permitted"),
    (libc::ENOENT, "ENOENT", "No such file or directory"),
    (libc::ESRCH, "ESRCH", "No such process"),
    (libc::EINTR, "EINTR", "Interrupted system call"),
    (libc::EIO, "EIO", "Input/output error"),
    (libc::ENXIO, "ENXIO", "No such device or address"),
    (libc::E2BIG, "E2BIG", "Argument list too long"),
    (libc::EBADF, "EBADF", "Bad file descriptor"),
    (libc::EAGAIN, "EAGAIN", "Resource temporarily unavailable"),
    (libc::ENOMEM, "ENOMEM", "Cannot allocate memory"),
    (libc::EACCES, "EACCES", "Permission denied"),
    (libc::EFAULT, "EFAULT", "Bad address"),
    (libc::EBUSY, "EBUSY", "Device or resource busy"),
    (libc::EEXIST, "EEXIST", "File exists"),
    (libc::EXDEV, "EXDEV", "Invalid cross-device link"),
    (libc::ENODEV, "ENODEV", "No such device"),
    (libc::ENOTDIR, "ENOTDIR", "Not a directory"),
    (libc::EISDIR, "EISDIR", "Is a directory"),
    (libc::EINVAL, "EINVAL", "Invalid argument"),
    (libc::ENFILE, "ENFILE", "Too many open files in system"),
    (libc::EMFILE, "EMFILE", "Too many open files"),
    (libc::ENOTTY, "ENOTTY", "Inappropriate ioctl for device"),
    (libc::EFBIG, "EFBIG", "File too large"),
    (libc::ENOSPC, "ENOSPC", "No space left on device"),
    (libc::ESPIPE, "ESPIPE", "Illegal seek"),
    (libc::EROFS, "EROFS", "Read-only file system"),
    (libc::EPIPE, "EPIPE", "Broken pipe"),
    (libc::EDOM, "EDOM", "Numerical argument out of domain"),
    (libc::ERANGE, "ERANGE", "Numerical result out of range"),
    (libc::EDEADLK, "EDEADLK", "Resource deadlock avoided"),
    (libc::ENOSYS, "ENOSYS", "Function not implemented"),
    (libc::ENODATA, "ENODATA", "No data available"),
    (
        libc::EOVERFLOW,
        "EOVERFLOW",
        "Value too large for defined data type",
    ),
    (libc::EBADFD, "EBADFD", "File descriptor in bad state"),
    (libc::EOPNOTSUPP, "EOPNOTSUPP", "Operation not supported"),
    (libc::EADDRINUSE, "EADDRINUSE", "Address already in use"),
    (libc::ETIMEDOUT, "ETIMEDOUT", "Connection timed out"),
    (libc::EALREADY, "EALREADY", "Operation already in progress"),
    (
        libc::EINPROGRESS,
        "EINPROGRESS",
        "Operation now in progress",
    ),
    (libc::ECANCELED, "ECANCELED", "Operation canceled"),
];

/// The symbolic name of `errno` ("ENODEV"), or "E<n>" for one not in the table.
pub fn name(errno: i32) -> Cow<'static, str> {
    match TABLE.iter().find(|e| e.0 == errno) {
        Some(e) => Cow::Borrowed(e.1),
        None => Cow::Owned(format!("E{errno}")),
    }
}

/// A short description of `errno` ("No such device").
pub fn describe(errno: i32) -> &'static str {
    TABLE
        .iter()
        .find(|e| e.0 == errno)
        .map_or("Unknown error", |e| e.2)
}

/// An error of the tool: a failed system call (with the operation that
/// failed and its errno) or anything else (a message).
#[derive(Debug)]
pub enum Error {
    Sys { op: Cow<'static, str>, errno: i32 },
    Msg(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error for `op` with an explicit errno.
    pub fn sys(op: impl Into<Cow<'static, str>>, errno: i32) -> Self {
        Error::Sys {
            op: op.into(),
            errno,
        }
    }

    /// An error for `op` from an `io::Error` (its errno if it has one).
    pub fn io(op: impl Into<Cow<'static, str>>, e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(errno) => Error::sys(op, errno),
            None => Error::Msg(format!("{}: {e}", op.into())),
        }
    }

    /// An error that is only a message.
    pub fn msg(m: impl Into<String>) -> Self {
        Error::Msg(m.into())
    }

    /// The errno, if this is a failed system call.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Sys { errno, .. } => Some(*errno),
            Error::Msg(_) => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sys { op, errno } => write!(f, "{op}: {} ({})", name(*errno), describe(*errno)),
            Error::Msg(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// Adds the failing operation's name to `io::Result`s.
pub trait Context<T> {
    fn op(self, op: impl Into<Cow<'static, str>>) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn op(self, op: impl Into<Cow<'static, str>>) -> Result<T> {
        self.map_err(|e| Error::io(op, e))
    }
}

/// `Ok(e)` when `result` failed with exactly `errno`; an error saying what
/// happened instead otherwise (success, another errno, a non-errno error).
pub fn expect_errno<T>(result: Result<T>, errno: i32) -> Result<Error> {
    match result {
        Err(e) if e.errno() == Some(errno) => Ok(e),
        Err(e) => Err(Error::msg(format!("expected {}, got {e}", name(errno)))),
        Ok(_) => Err(Error::msg(format!(
            "expected {}, but the call succeeded",
            name(errno)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(name(libc::EINVAL), "EINVAL");
        assert_eq!(name(libc::ENODEV), "ENODEV");
        assert_eq!(name(libc::EOPNOTSUPP), "EOPNOTSUPP");
        assert_eq!(name(libc::EEXIST), "EEXIST");
        assert_eq!(name(libc::EOVERFLOW), "EOVERFLOW");
        assert_eq!(name(libc::EBADF), "EBADF");
        assert_eq!(name(4000), "E4000");
        assert_eq!(describe(libc::ENODEV), "No such device");
        assert_eq!(describe(4000), "Unknown error");
    }

    #[test]
    fn x86_64_numbers() {
        assert_eq!(libc::EINVAL, 22);
        assert_eq!(libc::ENODEV, 19);
        assert_eq!(libc::EOPNOTSUPP, 95);
        assert_eq!(libc::EEXIST, 17);
        assert_eq!(libc::EOVERFLOW, 75);
    }

    #[test]
    fn table_has_no_duplicates() {
        for (i, a) in TABLE.iter().enumerate() {
            for b in &TABLE[i + 1..] {
                assert_ne!(a.0, b.0, "{} and {} share a number", a.1, b.1);
                assert_ne!(a.1, b.1);
            }
        }
    }

    #[test]
    fn display() {
        let e = Error::sys("IOMMU_IOAS_MAP_FILE", libc::ENODEV);
        assert_eq!(
            e.to_string(),
            "IOMMU_IOAS_MAP_FILE: ENODEV (No such device)"
        );
        let e = Error::io(
            "open /dev/iommu",
            io::Error::from_raw_os_error(libc::ENOENT),
        );
        assert_eq!(
            e.to_string(),
            "open /dev/iommu: ENOENT (No such file or directory)"
        );
        assert_eq!(Error::msg("plain").to_string(), "plain");
    }

    #[test]
    fn expect_errno_cases() {
        let r: Result<()> = Err(Error::sys("X", libc::ENODEV));
        assert!(expect_errno(r, libc::ENODEV).is_ok());

        let r: Result<()> = Err(Error::sys("X", libc::EINVAL));
        let e = expect_errno(r, libc::ENODEV).unwrap_err();
        assert_eq!(
            e.to_string(),
            "expected ENODEV, got X: EINVAL (Invalid argument)"
        );

        let e = expect_errno(Ok(5), libc::EEXIST).unwrap_err();
        assert_eq!(e.to_string(), "expected EEXIST, but the call succeeded");

        let r: Result<()> = Err(Error::msg("boom"));
        let e = expect_errno(r, libc::EEXIST).unwrap_err();
        assert_eq!(e.to_string(), "expected EEXIST, got boom");
    }
}
