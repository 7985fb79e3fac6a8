//! Parsers for flag values that clap's own types do not cover (sizes, durations, limits with a
//! sentinel). clap names the flag and the value in front of each message, so a bad value is an
//! error such as `invalid value '99999999999999G' for '--memory <MEMORY>': too large`.

use std::time::Duration;

/// The largest `--preserve-fds`: the kernel caps descriptors below INT_MAX (fs.nr_open), and the
/// preserved range starts after stdin, stdout and stderr.
pub const MAX_PRESERVE_FDS: i64 = i32::MAX as i64 - 3;

/// A size as runc's `update` takes it: "512m", "1G", "1048576" bytes, "-1" for unlimited.
pub fn size(s: &str) -> Result<i64, String> {
    if s == "-1" {
        return Ok(-1);
    }
    let lower = s.to_ascii_lowercase();
    let t = lower.strip_suffix('b').unwrap_or(&lower);
    let (num, shift) = match t.as_bytes().last() {
        Some(b'k') => (&t[..t.len() - 1], 10),
        Some(b'm') => (&t[..t.len() - 1], 20),
        Some(b'g') => (&t[..t.len() - 1], 30),
        Some(b't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| "not a size like 512m, 1G or -1 (unlimited)".to_string())?;
    if n < 0 {
        return Err("a size is positive, or -1 for unlimited".into());
    }
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("too large (at most {} bytes)", i64::MAX))
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
