//! What doctor says: one verdict per layer, in the order the layers were walked, with the
//! evidence and one concrete fix. The same data renders as text for a person and as JSON.

use std::fmt::Write as _;

use serde::Serialize;

/// The layers, in the order a careful engineer checks them: is it running, what files does it
/// see, can a packet leave and arrive, does the border guard let it pass, does anyone answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Process,
    Files,
    Network,
    Guard,
    Peer,
}

impl Layer {
    pub const ALL: [Layer; 5] = [
        Layer::Process,
        Layer::Files,
        Layer::Network,
        Layer::Guard,
        Layer::Peer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Process => "process",
            Layer::Files => "files",
            Layer::Network => "network",
            Layer::Guard => "guard",
            Layer::Peer => "peer",
        }
    }

    /// 1 to 5, in walking order.
    pub fn number(self) -> usize {
        Layer::ALL.iter().position(|l| *l == self).unwrap_or(0) + 1
    }

    /// What the layer is, for the text output.
    pub fn what(self) -> &'static str {
        match self {
            Layer::Process => "process (state, cgroup events, guard alerts)",
            Layer::Files => "files (mount ns: resolv.conf, hosts, nsswitch.conf)",
            Layer::Network => "network (net ns: links, addresses, routes, neighbours)",
            Layer::Guard => "border guard (nftables)",
            Layer::Peer => "peer (listening, answering)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Fault,
    /// Not looked at: an earlier layer is at fault, the question does not reach this layer (no
    /// `--to`), or the answer lies outside the machine. `summary` says which.
    NotChecked,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Fault => "FAULT",
            Verdict::NotChecked => "not checked",
        }
    }
}

/// One layer's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerReport {
    pub layer: Layer,
    pub verdict: Verdict,
    /// One line: what was found (ok), what is wrong (fault), or why it was not checked.
    pub summary: String,
    /// What the verdict rests on, one fact per entry ("lo: UP", "route 10.1.0.2 via dev db").
    pub evidence: Vec<String>,
    /// One concrete change that clears the fault (a command, or the islands-file entry to add).
    pub fix: Option<String>,
}

impl LayerReport {
    pub fn ok(layer: Layer, summary: impl Into<String>) -> LayerReport {
        LayerReport {
            layer,
            verdict: Verdict::Ok,
            summary: summary.into(),
            evidence: Vec::new(),
            fix: None,
        }
    }

    pub fn fault(layer: Layer, summary: impl Into<String>, fix: impl Into<String>) -> LayerReport {
        LayerReport {
            layer,
            verdict: Verdict::Fault,
            summary: summary.into(),
            evidence: Vec::new(),
            fix: Some(fix.into()),
        }
    }

    pub fn not_checked(layer: Layer, why: impl Into<String>) -> LayerReport {
        LayerReport {
            layer,
            verdict: Verdict::NotChecked,
            summary: why.into(),
            evidence: Vec::new(),
            fix: None,
        }
    }

    pub fn with_evidence(mut self, evidence: Vec<String>) -> LayerReport {
        self.evidence = evidence;
        self
    }
}

/// The whole answer: who was diagnosed, towards what, and every layer's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// "project/island" or "container ID".
    pub subject: String,
    /// The `--to` question as understood ("demo/db 10.1.0.2 tcp/5432"), if any.
    pub target: Option<String>,
    /// The `--dns` name, if any.
    pub dns: Option<String>,
    pub layers: Vec<LayerReport>,
}

impl Report {
    /// The first layer at fault.
    pub fn fault(&self) -> Option<&LayerReport> {
        self.layers.iter().find(|l| l.verdict == Verdict::Fault)
    }

    /// 0: every layer that was asked about is ok; 1: a layer is at fault. (2, doctor could not
    /// run, is the binary's answer to an `Err`.)
    pub fn exit_code(&self) -> i32 {
        i32::from(self.fault().is_some())
    }

    /// One line for `status`: the first fault's layer and summary, None when nothing is wrong.
    pub fn one_line(&self) -> Option<String> {
        self.fault()
            .map(|l| format!("{}: {}", l.layer.as_str(), l.summary))
    }

    /// The text a person reads: one block per layer, evidence indented, the fix last.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = write!(s, "doctor {}", self.subject);
        if let Some(t) = &self.target {
            let _ = write!(s, " -> {t}");
        }
        if let Some(d) = &self.dns {
            let _ = write!(s, " (dns {d})");
        }
        s.push('\n');
        for l in &self.layers {
            let _ = writeln!(
                s,
                "{}. {:<8} {:<11} {}",
                l.layer.number(),
                l.layer.as_str(),
                l.verdict.as_str(),
                l.summary
            );
            for e in &l.evidence {
                let _ = writeln!(s, "     - {e}");
            }
            if let Some(f) = &l.fix {
                let mut lines = f.lines();
                if let Some(first) = lines.next() {
                    let _ = writeln!(s, "     fix: {first}");
                }
                for more in lines {
                    let _ = writeln!(s, "          {more}");
                }
            }
        }
        match self.fault() {
            Some(l) => {
                let _ = writeln!(s, "at fault: {}", l.layer.what());
            }
            None => s.push_str("no fault found\n"),
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_fault_decides_the_exit_code_and_the_one_line() {
        let mut r = Report {
            subject: "p/a".into(),
            target: None,
            dns: None,
            layers: vec![LayerReport::ok(Layer::Process, "running")],
        };
        assert_eq!(r.exit_code(), 0);
        assert_eq!(r.one_line(), None);
        r.layers.push(LayerReport::fault(
            Layer::Network,
            "lo is down",
            "ip link set lo up",
        ));
        r.layers.push(LayerReport::not_checked(
            Layer::Guard,
            "an earlier layer is at fault",
        ));
        assert_eq!(r.exit_code(), 1);
        assert_eq!(r.one_line().as_deref(), Some("network: lo is down"));
        let text = r.render();
        assert!(
            text.contains("3. network  FAULT       lo is down"),
            "{text}"
        );
        assert!(text.contains("fix: ip link set lo up"), "{text}");
        assert!(text.contains("at fault: network"), "{text}");
    }

    #[test]
    fn json_names_layers_and_verdicts_in_lower_case() {
        let l = LayerReport::not_checked(Layer::Peer, "no --to");
        let v = serde_json::to_value(&l).unwrap();
        assert_eq!(v["layer"], "peer");
        assert_eq!(v["verdict"], "not_checked");
    }
}
