//! Devices for islands: `grant` resolves the file's entries (paths, CDI names), `node` gives a
//! planned island its own nodes, binds and cgroup rules.

#[cfg(feature = "cdi")]
mod cdi;
pub mod grant;
mod node;

/// Whether this build resolves CDI names (the `cdi` feature; docs/devices.md).
pub const CDI_BUILT_IN: bool = cfg!(feature = "cdi");

pub use grant::*;
pub use node::*;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn spec_dir(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let d = std::env::temp_dir().join(format!("atoll-cdi-unit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for (f, text) in files {
            std::fs::write(d.join(f), text).unwrap();
        }
        d
    }

    const MIG: &str = r#"{"cdiVersion": "0.6.0", "kind": "test.atoll.dev/gpu",
      "containerEdits": {"env": ["TEST_GPU_DRIVER=1"],
                         "deviceNodes": [{"path": "/dev/tctl", "type": "c", "major": 195, "minor": 255}]},
      "devices": [
        {"name": "0", "containerEdits": {"deviceNodes": [{"path": "/dev/tgpu0", "type": "c", "major": 195, "minor": 0}]}},
        {"name": "1", "containerEdits": {"deviceNodes": [{"path": "/dev/tgpu1", "type": "c", "major": 195, "minor": 1, "permissions": "rw"}]}},
        {"name": "0:1", "containerEdits": {"deviceNodes": [
          {"path": "/dev/tgpu0", "type": "c", "major": 195, "minor": 0},
          {"path": "/dev/nvidia-caps/nvidia-cap11", "type": "c", "major": 238, "minor": 11},
          {"path": "/dev/nvidia-caps/nvidia-cap12", "type": "c", "major": 238, "minor": 12}]}}
      ]}"#;

    #[test]
    fn cdi_names_resolve_to_nodes_rules_and_env() {
        let d = spec_dir("ok", &[("t.json", MIG)]);
        let r = Registry::load(vec![d.clone()]).unwrap();
        let g = r.resolve("test.atoll.dev/gpu=1").unwrap();
        let paths: Vec<&str> = g.nodes.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(paths, ["/dev/tctl", "/dev/tgpu1"]);
        assert_eq!(g.nodes[1].access, "rw");
        assert_eq!(g.env, ["TEST_GPU_DRIVER=1"]);
        assert_eq!(g.gpu_uses(), [GpuUse::Whole(1)]);
        let all = r.resolve("test.atoll.dev/gpu=all").unwrap();
        assert_eq!(all.nodes.len(), 5, "{:?}", all.nodes);
        let mig = r.resolve("test.atoll.dev/gpu=0:1").unwrap();
        assert!(matches!(&mig.gpu_uses()[..], [GpuUse::Mig(0, caps)] if caps.len() == 2));
        assert!(overlap(&GpuUse::Whole(0), &mig.gpu_uses()[0]));
        assert!(!overlap(&GpuUse::Whole(1), &mig.gpu_uses()[0]));
        let e = r.resolve("test.atoll.dev/gpu=7").unwrap_err();
        assert!(
            e.contains("known names: test.atoll.dev/gpu=0, test.atoll.dev/gpu=0:1"),
            "{e}"
        );
        let e = r.resolve("other.dev/x=1").unwrap_err();
        assert!(e.contains("known kinds: test.atoll.dev/gpu"), "{e}");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_broken_spec_names_its_file_and_field() {
        let bad = MIG.replace(
            "\"major\": 195, \"minor\": 1,",
            "\"majr\": 195, \"minor\": 1,",
        );
        let d = spec_dir("bad", &[("t.json", &bad)]);
        let e = Registry::load(vec![d.clone()]).err().unwrap();
        assert!(e.contains("t.json") && e.contains("majr"), "{e}");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_grant_is_a_bind_of_the_islands_node_and_one_cgroup_rule() {
        let f = crate::file::parse(
            Path::new("p.toml"),
            "name = \"p\"\n[[island]]\nname = \"web\"\ncommand = [\"/bin/sh\"]\ndevices = [\"/dev/null:rw\"]\n",
        )
        .unwrap();
        let plan = crate::plan::build(&f, Path::new("/s"), Path::new("/r"), &[]).unwrap();
        let island = &plan.islands[0];
        let mut c = crate::bundle::config(island, &[]);
        apply_to_config(island, &mut c);
        let _: oci_spec::runtime::Spec = serde_json::from_value(c.clone()).unwrap();
        assert_eq!(
            c["linux"]["resources"]["devices"],
            serde_json::json!([{"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}])
        );
        let m = c["mounts"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(m["destination"], "/dev/null");
        assert_eq!(
            m["source"], "/var/lib/atoll/islands/p/.devices/web/0-0",
            "beside the data dirs, not in the nodev state tmpfs"
        );
        assert!(!m["options"].as_array().unwrap().contains(&"nodev".into()));
    }

    #[test]
    fn paths_must_be_devices() {
        let g = from_path("/dev/null:rw").unwrap();
        assert_eq!(
            (
                g.nodes[0].major,
                g.nodes[0].minor,
                g.nodes[0].access.as_str()
            ),
            (1, 3, "rw")
        );
        assert!(from_path("/etc/hostname")
            .unwrap_err()
            .contains("not a device node"));
        assert!(from_path("/dev/nonexistent-x")
            .unwrap_err()
            .contains("No such file"));
        assert!(from_path("/dev/null:rx").unwrap_err().contains("access"));
    }
}
