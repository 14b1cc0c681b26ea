#!/usr/bin/env bash
# Installs what vif's tests and demo need on Debian 12, as root: Deno (pinned,
# project-local in .tools/ through npm), the Debian packages the tests drive,
# and the npm dependencies in Deno's cache. Idempotent; quick when all is there.
set -euo pipefail

DENO_VERSION=2.9.6

# Debian packages the tests use. Add here; each is installed only when missing.
PACKAGES=(
  iproute2      # ip netns, ip link, ip route
  nftables      # the kube-proxy part of the simulated cluster
  iperf3        # throughput
  curl          # HTTP client
  dnsutils      # dig
  socat         # TCP/UDP echo servers and clients
  nginx-light   # HTTP server in pods
  dnsmasq-base  # the cluster DNS
  tcpdump       # packet captures while debugging
  wrk           # HTTP load
  procps        # ps, pkill
  iputils-ping  # ping
  openssl       # test certificates
  python3-kubernetes # a client nobody here wrote, against the fake API server (tests/sim/apiserver)
  dnsperf       # DNS query rate (deno task bench)
  openvpn       # a peer path for deno task bench: OpenVPN, static key, UDP
  sshuttle      # a peer path for deno task bench
  openssh-server # sshd on a simulated node for sshuttle (bench starts its own, in a namespace)
  openssh-client # ssh, ssh-keygen
  musl-tools    # musl-gcc: a musl getaddrinfo client for the DNS watchdog test (tests/e2e/daemon_trust_test.ts)
  sshfs         # vif intercept --mount: sshfs -o slave on the workstation (fuse3 with it)
  openssh-sftp-server # the traffic-agent's sftp-server, which sshfs speaks to over the tunnel
  sudo          # vif connect as an ordinary user starts the daemon through sudo (tests/e2e/sudo_test.ts)
  zsh           # vif completion zsh, run by mod/cli/completion_test.ts
  fish          # vif completion fish, run by mod/cli/completion_test.ts
  # Debian's kubectl (kubernetes-client) is not listed: where google-cloud-cli
  # owns /usr/bin/kubectl the install fails on the file conflict, so
  # tests/sim/apiserver/install_kubectl.sh unpacks the .deb into .tools/.
)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
DENO="$TOOLS/node_modules/.bin/deno"

say() { printf 'setup: %s\n' "$*"; }

as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    say "installing needs root: run scripts/setup.sh as root (or install sudo)" >&2
    exit 1
  fi
}

# --- Debian packages --------------------------------------------------------
wanted=("${PACKAGES[@]}")
command -v npm >/dev/null || wanted+=(nodejs npm) # npm installs Deno below.
missing=()
# One dpkg-query for all; a package it does not know is missing too.
installed="$(dpkg-query -W -f='${Package} ${Status}\n' "${wanted[@]}" 2>/dev/null || true)"
for package in "${wanted[@]}"; do
  grep -qx "$package install ok installed" <<<"$installed" || missing+=("$package")
done
if ((${#missing[@]} > 0)); then
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
else
  say "Debian packages present (${#wanted[@]})"
fi

# --- Deno, pinned, in .tools/ ------------------------------------------------
current="$("$DENO" --version 2>/dev/null | awk 'NR == 1 { print $2 }' || true)"
if [[ "$current" != "$DENO_VERSION" ]]; then
  say "installing deno $DENO_VERSION into .tools/ (found: ${current:-none})"
  # npm calls a damaged or other-version copy "up to date": remove it first.
  rm -rf "$TOOLS/node_modules/deno" "$TOOLS/node_modules/@deno" \
    "$TOOLS/node_modules/.bin/deno" "$TOOLS/node_modules/.package-lock.json"
  mkdir -p "$TOOLS"
  npm install --prefix "$TOOLS" --no-save --no-audit --no-fund --loglevel=error \
    "deno@$DENO_VERSION" </dev/null
  current="$("$DENO" --version | awk 'NR == 1 { print $2 }')"
  if [[ "$current" != "$DENO_VERSION" ]]; then
    say "deno in .tools/ reports version \"$current\", not $DENO_VERSION" >&2
    exit 1
  fi
else
  say "deno $DENO_VERSION present"
fi

# --- npm dependencies, into Deno's cache (deno.json: "nodeModulesDir": "none") -
(cd "$ROOT" && "$DENO" install --quiet </dev/null)
say "npm dependencies cached"

# --- Debian's kubectl (1.20), unpacked into .tools/ ----------------------------
# The fake API server is checked against it; installing the package can clash
# with another kubectl owning /usr/bin/kubectl, so it is unpacked instead.
kubectl="$(bash "$ROOT/tests/sim/apiserver/install_kubectl.sh")"
say "kubectl for the API-server tests: ${kubectl#"$ROOT/"}"

if [[ ! -c /dev/net/tun ]]; then
  say "warning: /dev/net/tun is missing: the TUN tests and the demo need it (modprobe tun)" >&2
fi
