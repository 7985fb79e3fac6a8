#!/usr/bin/env python3
"""Drive one pod through containerd's CRI plugin, the calls kubelet makes for a pod with
`runtimeClassName: HANDLER`: RunPodSandbox (the handler names the runtime table in config.toml),
CreateContainer, StartContainer, ExecSync; then StopPodSandbox and RemovePodSandbox.

    pod.py SOCKET HANDLER RUNTIME RUNTIME_ROOT NAME IMAGE CGROUP_PARENT LOG_DIR [KEY=VALUE ...]

KEY=VALUE pairs are pod annotations. Prints one JSON object: the sandbox and container ids, the
ExecSync result, and `RUNTIME --root RUNTIME_ROOT state` of the running container (which shows
that the handler's BinaryName ran it, and which annotations reached its config.json). The messages are encoded by hand (a few fields of k8s.io/cri-api's
runtime.v1 messages, by field number) so that only python3-grpcio is needed, not generated code.
"""

import json
import subprocess
import sys

import grpc

TIMEOUT = 60


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def length_delimited(field, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(field << 3 | 2) + varint(len(data)) + data


def integer(field, n):
    return varint(field << 3) + varint(n)


def string_map(field, d):
    return b"".join(length_delimited(field, length_delimited(1, k) + length_delimited(2, v)) for k, v in d.items())


def decode(data):
    """field number -> list of values (ints for varints, bytes for length-delimited)."""
    fields, i = {}, 0

    def read_varint():
        nonlocal i
        shift = n = 0
        while True:
            b = data[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    while i < len(data):
        key = read_varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            value = read_varint()
        elif wire == 2:
            size = read_varint()
            value, i = data[i : i + size], i + size
        else:
            raise ValueError(f"wire type {wire} not expected in a CRI response")
        fields.setdefault(field, []).append(value)
    return fields


def main():
    sock, handler, runtime, runtime_root, name, image, cgroup_parent, log_dir, *pairs = sys.argv[1:]
    annotations = dict(p.split("=", 1) for p in pairs)
    channel = grpc.insecure_channel(f"unix://{sock}")

    def call(method, request):
        rpc = channel.unary_unary(f"/runtime.v1.RuntimeService/{method}")
        try:
            return decode(rpc(request, timeout=TIMEOUT))
        except grpc.RpcError as e:
            sys.exit(f"{method}: {e.code().name}: {e.details()}")

    # PodSandboxConfig: metadata 1 (name 1, uid 2, namespace 3), log_directory 3, annotations 7,
    # linux 8 (cgroup_parent 1, security_context 2 (namespace_options 1 (network 1: NODE = 2))).
    # The host's network namespace: the pod needs no CNI plugin and sends nothing.
    metadata = length_delimited(1, name) + length_delimited(2, name + "-uid") + length_delimited(3, "atoll-tests")
    linux = length_delimited(1, cgroup_parent) + length_delimited(2, length_delimited(1, integer(1, 2)))
    sandbox_config = (
        length_delimited(1, metadata)
        + length_delimited(3, log_dir)
        + string_map(7, annotations)
        + length_delimited(8, linux)
    )
    # RunPodSandboxRequest: config 1, runtime_handler 2.
    pod = call("RunPodSandbox", length_delimited(1, sandbox_config) + length_delimited(2, handler))[1][0].decode()
    result = {"pod": pod}
    try:
        # ContainerConfig: metadata 1 (name 1), image 2 (image 1), command 3, log_path 11.
        script = "trap 'exit 0' TERM; sleep 1000 & wait"
        config = (
            length_delimited(1, length_delimited(1, "main"))
            + length_delimited(2, length_delimited(1, image))
            + b"".join(length_delimited(3, a) for a in ["/bin/sh", "-c", script])
            + length_delimited(11, "main.log")
        )
        # CreateContainerRequest: pod_sandbox_id 1, config 2, sandbox_config 3.
        created = call(
            "CreateContainer",
            length_delimited(1, pod) + length_delimited(2, config) + length_delimited(3, sandbox_config),
        )
        container = created[1][0].decode()
        result["container"] = container
        call("StartContainer", length_delimited(1, container))
        # ExecSyncRequest: container_id 1, cmd 2, timeout 3; response: stdout 1, stderr 2, exit_code 3.
        argv = ["/bin/sh", "-c", "id -u; echo $HOME; echo err >&2; exit 3"]
        out = call("ExecSync", length_delimited(1, container) + b"".join(length_delimited(2, a) for a in argv) + integer(3, 30))
        result["exec"] = {
            "stdout": out.get(1, [b""])[0].decode(),
            "stderr": out.get(2, [b""])[0].decode(),
            "exit_code": out.get(3, [0])[0],
        }
        state = subprocess.run(
            [runtime, "--root", runtime_root, "state", container], capture_output=True, timeout=TIMEOUT
        )
        if state.returncode != 0:
            sys.exit(f"{runtime} state {container}: {state.stderr.decode()}")
        state = json.loads(state.stdout)
        result["state"] = {"status": state["status"], "annotations": state.get("annotations", {})}
        print(json.dumps(result))
    finally:
        call("StopPodSandbox", length_delimited(1, pod))
        call("RemovePodSandbox", length_delimited(1, pod))


if __name__ == "__main__":
    main()
