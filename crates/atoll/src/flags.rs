//! Parsers for flag values that clap's own types do not cover (sizes, durations, limits with a
//! sentinel). clap names the flag and the value in front of each message, so a bad value is an
//! error such as `invalid value '99999999999999G' for '--memory <MEMORY>': too large`.

use std::path::PathBuf;
use std::time::Duration;

/// The largest `--preserve-fds`: the kernel caps descriptors below INT_MAX (fs.nr_open), and the
/// preserved range starts after stdin, stdout and stderr.
pub const MAX_PRESERVE_FDS: i64 = i32::MAX as i64 - 3;

/// A size as runc's `update` takes it (docker's RAMInBytes): a number, decimals allowed, an
/// optional space, then an optional binary unit k/m/g/t/p, an optional "i" and an optional "b"
/// ("512m", "1.5G", "1 GiB", "4096b"); "-1" is unlimited.
pub fn size(s: &str) -> Result<i64, String> {
    if s == "-1" {
        return Ok(-1);
    }
    const BAD: &str = "not a size like 512m, 1.5g, 1GiB or -1 (unlimited)";
    let lower = s.to_ascii_lowercase();
    let t = lower.strip_suffix('b').unwrap_or(&lower);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (num, shift) = match t.as_bytes().last() {
        Some(b'k') => (&t[..t.len() - 1], 10),
        Some(b'm') => (&t[..t.len() - 1], 20),
        Some(b'g') => (&t[..t.len() - 1], 30),
        Some(b't') => (&t[..t.len() - 1], 40),
        Some(b'p') => (&t[..t.len() - 1], 50),
        _ => (t, 0),
    };
    let num = num.strip_suffix(' ').unwrap_or(num);
    // Digits, then optionally one '.' and digits: no sign, exponent, "inf" or "nan".
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || (num.contains('.') && frac.is_empty()) {
        return Err(BAD.into());
    }
    let too_large = || format!("too large (at most {} bytes)", i64::MAX);
    let whole: i64 = int.parse().map_err(|_| too_large())?;
    let mut bytes = whole.checked_mul(1 << shift).ok_or_else(too_large)?;
    if !frac.is_empty() {
        // The fraction of a unit, truncated to whole bytes as runc does.
        let f: f64 = format!("0.{frac}").parse().map_err(|_| BAD.to_string())?;
        bytes = bytes
            .checked_add((f * (1u64 << shift) as f64) as i64)
            .ok_or_else(too_large)?;
    }
    Ok(bytes)
}

/// `--log`: runc reads the value as a plain path ("file:/x" is a relative path), and an empty
/// value as "stderr".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogPath {
    Stderr,
    File(PathBuf),
}

pub fn log_path(s: &str) -> Result<LogPath, String> {
    if s.is_empty() {
        Ok(LogPath::Stderr)
    } else {
        Ok(LogPath::File(s.into()))
    }
}

/// How often `events` prints: "5s", "500ms", "2m" or plain seconds; positive and finite.
pub fn interval(s: &str) -> Result<Duration, String> {
    let (num, unit) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .parse()
        .map_err(|_| "not a duration like 5s, 500ms or 2m".to_string())?;
    // f64 parsing accepts "inf" and "nan"; Duration holds neither, nor a negative span.
    match Duration::try_from_secs_f64(v * unit) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("the interval must be longer than zero".into()),
        Err(_) => Err("not a positive, finite duration".into()),
    }
}

/// A cgroup limit where 0 leaves the current value and -1 means unlimited (runc's pids and
/// CFS quota flags); other negative numbers are refused instead of being read as unlimited.
pub fn limit(s: &str) -> Result<i64, String> {
    match s.parse::<i64>() {
        Ok(n) if n >= -1 => Ok(n),
        Ok(_) => Err("a limit is a positive number, 0 (unchanged) or -1 (unlimited)".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// blkio weight: 10..=1000 as cgroup v1 and runc define it, or 0 to leave it unchanged.
pub fn blkio_weight(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(w) if w == 0 || (10..=1000).contains(&w) => Ok(w),
        Ok(_) => Err("a weight is 10 to 1000 (0 leaves it unchanged)".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size("512m"), Ok(512 << 20));
        assert_eq!(size("1G"), Ok(1 << 30));
        assert_eq!(size("1gb"), Ok(1 << 30));
        assert_eq!(size("4096"), Ok(4096));
        assert_eq!(size("-1"), Ok(-1));
        assert_eq!(size("8388607T"), Ok(8_388_607 << 40));
        assert!(size("8388608T").unwrap_err().contains("too large"));
        assert!(size("99999999999999G").unwrap_err().contains("too large"));
        assert!(size("-5").is_err());
        assert!(size("-2G").is_err());
        assert!(size("").is_err());
        assert!(size("G").is_err());
        assert!(size("1x").is_err());
        assert_eq!(size("1.5g"), Ok(3 << 29));
        assert_eq!(size("512 m"), Ok(512 << 20));
        assert_eq!(size("1GiB"), Ok(1 << 30));
        assert_eq!(size("2p"), Ok(2 << 50));
        assert_eq!(size("4096b"), Ok(4096));
        for bad in [
            "1.", ".5m", "1..2", "1e3", "inf", "nan", "+5", "1  m", " 1m", "1.2.3m",
        ] {
            assert!(size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn intervals() {
        assert_eq!(interval("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(interval("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(interval("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(interval("3"), Ok(Duration::from_secs(3)));
        for bad in [
            "-1s", "infs", "inf", "nan", "NaNs", "1e300s", "0s", "0", "-0ms", "", "s", "5h",
        ] {
            assert!(interval(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn limits() {
        assert_eq!(limit("-1"), Ok(-1));
        assert_eq!(limit("0"), Ok(0));
        assert_eq!(limit("100"), Ok(100));
        assert!(limit("-7").is_err());
        assert!(limit("99999999999999999999").is_err());
        assert_eq!(blkio_weight("10"), Ok(10));
        assert_eq!(blkio_weight("0"), Ok(0));
        assert!(blkio_weight("5").is_err());
        assert!(blkio_weight("1001").is_err());
    }
}
