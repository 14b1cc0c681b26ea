"""Drives the fake API server with Debian's python3-kubernetes (22.6).

Run with /usr/bin/python3. Connection details come from the environment:
VIF_API_URL, VIF_API_CA (path), VIF_API_TOKEN. The first argument picks what
to do; the result is one JSON object on stdout.

  echo NS POD PORT[,PORT...] SIZE   port-forward, send SIZE bytes per port, read them back
  refused NS POD PORT               port-forward to a closed port, report the error channel
  crud NS                           configmap create/list/patch/delete and a pod watch
  tokenrequest NS SA AUDIENCE       a TokenRequest for a service account, then its TokenReview
  tokenreview TOKEN AUDIENCE        a TokenReview ("-" for no audiences)
  podlog NS POD CONTAINER TAIL      a container's last TAIL lines, its previous run's log,
                                    and the error for pod "multi" without a container
"""

import json
import os
import socket
import sys
import threading
import time

from kubernetes import client, watch
from kubernetes.stream import portforward


def api_client():
    cfg = client.Configuration()
    cfg.host = os.environ["VIF_API_URL"]
    cfg.ssl_ca_cert = os.environ["VIF_API_CA"]
    cfg.api_key = {"authorization": os.environ["VIF_API_TOKEN"]}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(cfg)


def api():
    return client.CoreV1Api(api_client())


def review(token, audience):
    auth = client.AuthenticationV1Api(api_client())
    spec = client.V1TokenReviewSpec(token=token, audiences=None if audience == "-" else [audience])
    r = auth.create_token_review(client.V1TokenReview(spec=spec))
    user = r.status.user
    return {
        "authenticated": r.status.authenticated,
        "error": r.status.error,
        "audiences": r.status.audiences,
        "user": None if user is None else {
            "username": user.username, "uid": user.uid, "groups": user.groups, "extra": user.extra,
        },
    }


def tokenrequest(ns, sa, audience):
    core = api()
    body = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[audience], expiration_seconds=600))
    r = core.create_namespaced_service_account_token(sa, ns, body)
    print(json.dumps({
        "expiration": r.status.expiration_timestamp.isoformat(),
        "review": review(r.status.token, audience),
    }))


def recv_exactly(sock, n, deadline):
    out = bytearray()
    while len(out) < n:
        sock.settimeout(max(0.1, deadline - time.time()))
        chunk = sock.recv(min(65536, n - len(out)))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def echo(ns, pod, ports_text, size):
    core = api()
    ports = [int(p) for p in ports_text.split(",")]
    pf = portforward(core.connect_get_namespaced_pod_portforward, pod, ns, ports=ports_text)
    results = {}
    for i, port in enumerate(ports):
        sock = pf.socket(port)
        payload = bytes((j * 7 + i) % 251 for j in range(size))
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        got = recv_exactly(sock, size, time.time() + 10)
        sender.join()
        results[str(port)] = {"sent": size, "received": len(got), "equal": got == payload,
                              "error": pf.error(port)}
    for port in ports:
        pf.socket(port).close()
    print(json.dumps({"ports": results}))


def refused(ns, pod, port_text):
    core = api()
    port = int(port_text)
    pf = portforward(core.connect_get_namespaced_pod_portforward, pod, ns, ports=port_text)
    sock = pf.socket(port)
    sock.settimeout(10)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    deadline = time.time() + 5
    while pf.error(port) is None and time.time() < deadline:
        time.sleep(0.05)
    print(json.dumps({"data": data.decode(errors="replace"), "error": pf.error(port)}))


def crud(ns):
    core = api()
    body = {"metadata": {"name": "cfg", "labels": {"app": "py"}}, "data": {"a": "1"}}
    core.create_namespaced_config_map(ns, body)
    listed = core.list_namespaced_config_map(ns, label_selector="app=py")
    patched = core.patch_namespaced_config_map("cfg", ns, {"data": {"b": "2"}})
    seen = []
    w = watch.Watch()

    def make_pod():
        time.sleep(0.3)
        core.create_namespaced_pod(ns, {
            "metadata": {"name": "py-pod"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
        })

    t = threading.Thread(target=make_pod)
    t.start()
    for event in w.stream(core.list_namespaced_pod, ns, timeout_seconds=5):
        seen.append([event["type"], event["object"].metadata.name,
                     event["object"].status.phase])
        if event["object"].metadata.name == "py-pod":
            w.stop()
    t.join()
    deleted = core.delete_namespaced_config_map("cfg", ns)
    print(json.dumps({
        "listed": [c.metadata.name for c in listed.items],
        "patched": patched.data,
        "watched": seen,
        "deleted": deleted.status,
    }))


def podlog(ns, pod, container, tail):
    core = api()
    log = core.read_namespaced_pod_log(pod, ns, container=container, tail_lines=int(tail))
    previous = core.read_namespaced_pod_log(pod, ns, container=container, previous=True)
    try:
        core.read_namespaced_pod_log("multi", ns)
        error = None
    except client.ApiException as e:
        error = "%d %s" % (e.status, json.loads(e.body)["message"])
    print(json.dumps({"log": log, "previous": previous, "error": error}))


def main():
    mode = sys.argv[1]
    if mode == "echo":
        echo(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    elif mode == "refused":
        refused(sys.argv[2], sys.argv[3], sys.argv[4])
    elif mode == "crud":
        crud(sys.argv[2])
    elif mode == "tokenrequest":
        tokenrequest(sys.argv[2], sys.argv[3], sys.argv[4])
    elif mode == "tokenreview":
        print(json.dumps(review(sys.argv[2], sys.argv[3])))
    elif mode == "podlog":
        podlog(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        raise SystemExit("unknown mode %r" % mode)


if __name__ == "__main__":
    main()
