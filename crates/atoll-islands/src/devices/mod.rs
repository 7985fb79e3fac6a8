//! Devices for islands: `grant` resolves the file's entries (paths, CDI names), `node` gives a
//! planned island its own nodes, binds and cgroup rules.

pub mod cdi;
pub mod grant;
mod node;

pub use grant::*;
pub use node::*;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Edits as the atoll-cdi helper prints them for a MIG-shaped spec.
    fn edits(nodes: &[(&str, u32, u32, &str)]) -> serde_json::Value {
        let devices: Vec<_> = nodes
            .iter()
            .map(|(p, ma, mi, _)| serde_json::json!({"path": p, "type": "c", "major": ma, "minor": mi}))
            .collect();
        let rules: Vec<_> = nodes
            .iter()
            .map(|(_, ma, mi, acc)| serde_json::json!({"allow": true, "type": "c", "major": ma, "minor": mi, "access": acc}))
            .collect();
        serde_json::json!({"process": {"env": ["TEST_GPU_DRIVER=1"]},
            "linux": {"devices": devices, "resources": {"devices": rules}}})
    }

    #[test]
    fn cdi_edits_become_nodes_rules_and_env() {
        let g = cdi::grant_from_edits(
            "test.atoll.dev/gpu=1",
            &edits(&[("/dev/tctl", 195, 255, "rwm"), ("/dev/tgpu1", 195, 1, "rw")]),
        )
        .unwrap();
        let paths: Vec<&str> = g.nodes.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(paths, ["/dev/tctl", "/dev/tgpu1"]);
        assert_eq!(g.nodes[1].access, "rw", "the spec's permissions, not rwm");
        assert_eq!(g.env, ["TEST_GPU_DRIVER=1"]);
        assert_eq!(g.gpu_uses(), [GpuUse::Whole(1)]);
        let none = cdi::grant_from_edits("t/x=0", &edits(&[("/dev/tgpu0", 195, 0, "")])).unwrap();
        assert_eq!(
            none.nodes[0].access, "",
            "permissions \"none\" stays no access"
        );
        let mig = cdi::grant_from_edits(
            "test.atoll.dev/gpu=0:1",
            &edits(&[
                ("/dev/tgpu0", 195, 0, "rwm"),
                ("/dev/nvidia-caps/nvidia-cap11", 238, 11, "rwm"),
                ("/dev/nvidia-caps/nvidia-cap12", 238, 12, "rwm"),
            ]),
        )
        .unwrap();
        assert!(matches!(&mig.gpu_uses()[..], [GpuUse::Mig(0, caps)] if caps.len() == 2));
        assert!(overlap(&GpuUse::Whole(0), &mig.gpu_uses()[0]));
        assert!(!overlap(&GpuUse::Whole(1), &mig.gpu_uses()[0]));
        let e = cdi::grant_from_edits("t/x=0", &edits(&[("/etc/x", 1, 3, "rwm")])).unwrap_err();
        assert!(e.contains("under /dev"), "{e}");
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
        let mut c = crate::bundle::config(&plan, island, &[]);
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
