//! A seeded mutator for the parser fuzz tests (fuzz/). No coverage-guided fuzzer runs on the
//! stable toolchain, so this turns a corpus of real inputs into many broken ones: byte edits,
//! and for JSON, edits of the value tree (extreme numbers, wrong types, dropped keys), which
//! reach the checks behind the parser. Every input is reproducible from the seed printed on a
//! panic, and the failing input is written to target/fuzz-crashes/.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

/// xorshift64*: small, fast, and the same sequence on every host for a given seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform-enough in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())]
    }
}

/// Values that break naive number handling: sign, zero, the edges of every integer width,
/// float specials JSON can spell.
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "-7",
    "1",
    "4096",
    "2147483647",
    "2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "1099511627776",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "-1e308",
    "0.5",
    "1e-9",
];

/// Strings that reach path, id and size checks.
const STRINGS: &[&str] = &[
    "",
    "/",
    "..",
    "../../../../",
    "/proc",
    "/proc/self/exe",
    "rel/path",
    "a\u{0}b",
    "-1s",
    "infs",
    "NaN",
    "1t",
    "🦀",
    "\\",
    "${HOME}",
    "x=y",
    "0x10",
    " ",
    "\n",
];

/// Byte strings spliced in by the byte mutator: syntax of JSON and TOML.
const TOKENS: &[&[u8]] = &[
    b"{", b"}", b"[", b"]", b"\"", b":", b",", b"=", b"[[", b"]]", b"null", b"true", b"-", b"\n",
    b"#", b"'''", b"\"\"\"", b"\\u0000", b"1e999", b"\xff", b"\xc3", b"inf", b"nan",
];

/// One to four byte-level edits of `input`: flip, delete, duplicate, insert a token, truncate,
/// or splice in a slice of `other` (another corpus entry).
pub fn mutate_bytes(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            2 if !v.is_empty() => {
                let end = (at + 1 + rng.below(64)).min(v.len());
                let chunk = v[at.min(end)..end].to_vec();
                v.splice(at..at, chunk);
            }
            3 => {
                let t = rng.pick(TOKENS);
                v.splice(at..at, t.iter().copied());
            }
            4 => v.truncate(at),
            5 if !other.is_empty() => {
                let from = rng.below(other.len());
                let end = (from + 1 + rng.below(128)).min(other.len());
                v.splice(at..at, other[from..end].iter().copied());
            }
            _ => {
                let n: &str = rng.pick(NUMBERS);
                v.splice(at..at, n.bytes());
            }
        }
    }
    v
}

fn random_value(rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 => {
            let n: &str = rng.pick(NUMBERS);
            serde_json::from_str(n).unwrap_or(Value::Null)
        }
        1 => Value::String(rng.pick(STRINGS).to_string()),
        2 => Value::Null,
        3 => Value::Bool(rng.below(2) == 0),
        4 => Value::Array(vec![]),
        _ => Value::Object(Default::default()),
    }
}

/// One to three edits of the JSON tree: replace a value (number, string, wrong type), drop an
/// object key, empty or grow an array.
pub fn mutate_json(rng: &mut Rng, input: &Value) -> Value {
    let mut v = input.clone();
    for _ in 0..=rng.below(3) {
        edit_somewhere(rng, &mut v);
    }
    v
}

fn edit_somewhere(rng: &mut Rng, v: &mut Value) {
    // Walk down a random path, stopping at a random depth.
    let descend = rng.below(4) != 0;
    match v {
        Value::Object(m) if descend && !m.is_empty() => {
            let key = m
                .keys()
                .nth(rng.below(m.len()))
                .cloned()
                .unwrap_or_default();
            if rng.below(8) == 0 {
                m.remove(&key);
            } else if let Some(child) = m.get_mut(&key) {
                edit_somewhere(rng, child);
            }
        }
        Value::Array(a) if descend && !a.is_empty() => {
            let i = rng.below(a.len());
            match rng.below(8) {
                0 => a.clear(),
                1 => {
                    let dup = a[i].clone();
                    a.push(dup);
                }
                _ => edit_somewhere(rng, &mut a[i]),
            }
        }
        _ => *v = random_value(rng),
    }
}

/// Feed `target` the corpus files of `corpus_dir` unchanged, then mutations of them until
/// `budget` runs out (`ATOLL_FUZZ_SECS` overrides it; `ATOLL_FUZZ_SEED` fixes the seed).
/// `target` may return any error; a panic fails the test, naming the seed and the saved input.
/// Returns how many inputs ran.
pub fn run(name: &str, corpus_dir: &Path, budget: Duration, mut target: impl FnMut(&[u8])) -> u64 {
    let mut corpus: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(corpus_dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", corpus_dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, data)
        })
        .collect();
    corpus.sort();
    assert!(
        !corpus.is_empty(),
        "corpus {} is empty",
        corpus_dir.display()
    );
    let budget = std::env::var("ATOLL_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or(budget);
    let seed = std::env::var("ATOLL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    let mut rng = Rng::new(seed);
    let mut once = |input: &[u8], what: &str| {
        if catch_unwind(AssertUnwindSafe(|| target(input))).is_err() {
            let dir = crash_dir();
            let _ = std::fs::create_dir_all(&dir);
            let file = dir.join(format!("{name}-{seed}"));
            let saved = std::fs::write(&file, input).map(|()| file.display().to_string());
            panic!(
                "{name}: panic on {what} (ATOLL_FUZZ_SEED={seed}); input saved as {saved:?}:\n{}",
                String::from_utf8_lossy(input)
            );
        }
    };
    for (path, data) in &corpus {
        once(data, &format!("corpus file {}", path.display()));
    }
    let start = Instant::now();
    let mut runs = corpus.len() as u64;
    while start.elapsed() < budget {
        let (_, base) = &corpus[rng.below(corpus.len())];
        let (_, other) = &corpus[rng.below(corpus.len())];
        let json = (rng.below(2) == 0)
            .then(|| serde_json::from_slice::<Value>(base).ok())
            .flatten();
        let input = match json {
            Some(v) => serde_json::to_vec_pretty(&mutate_json(&mut rng, &v)).unwrap_or_default(),
            None => mutate_bytes(&mut rng, base, other),
        };
        once(&input, "a mutated input");
        runs += 1;
    }
    runs
}

/// target/fuzz-crashes beside the running test binary's profile directory.
fn crash_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent()?.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(std::env::temp_dir)
        .join("fuzz-crashes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness is only worth something if a panic in the target fails the run.
    #[test]
    #[should_panic(expected = "panic on a mutated input")]
    fn a_panicking_target_fails_the_run() {
        let seed = br#"{"a": [1, 2, {"b": "c"}]}"#.to_vec();
        let corpus =
            std::env::temp_dir().join(format!("atoll-testkit-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&corpus).unwrap();
        std::fs::write(corpus.join("seed.json"), &seed).unwrap();
        let res = catch_unwind(AssertUnwindSafe(|| {
            run("selftest", &corpus, Duration::from_secs(5), |input| {
                assert_eq!(input, &seed[..], "mutated");
            })
        }));
        std::fs::remove_dir_all(&corpus).unwrap();
        if let Err(p) = res {
            std::panic::resume_unwind(p);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_mutations() {
        let v: Value = serde_json::from_str(r#"{"a": [1, 2, {"b": "c"}], "d": true}"#).unwrap();
        let (mut r1, mut r2) = (Rng::new(42), Rng::new(42));
        for _ in 0..100 {
            assert_eq!(mutate_json(&mut r1, &v), mutate_json(&mut r2, &v));
            assert_eq!(
                mutate_bytes(&mut r1, b"name = \"x\"", b"[[island]]"),
                mutate_bytes(&mut r2, b"name = \"x\"", b"[[island]]")
            );
        }
    }
}
