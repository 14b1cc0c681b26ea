# syntax=docker/dockerfile:1
#
# The vif image: one binary made by `deno compile`, run as the
# traffic-manager (`vif --serve`, DESIGN.md §1 and §6) and, in intercepted
# pods, as the traffic-agent (`/vif agent`, with OpenSSH's sftp-server for
# `vif intercept --mount`, DESIGN.md §10). `vif install` deploys
# it as ghcr.io/vif-dev/vif:<version> (mod/kube/manifests.ts), with the command
# given in full (`/vif --serve --tls-dir /var/run/secrets/vif/tls`), so the
# ENTRYPOINT below is for `docker run` and anything that starts the image bare.
#
#   docker build -t ghcr.io/vif-dev/vif:0.1.0 .
#   docker run --rm ghcr.io/vif-dev/vif:0.1.0 --tls-dir /tls --listen 0.0.0.0:8081
#
# NOT BUILT HERE: the development machines have no container engine, and
# `deno compile` cannot run here either (it downloads `denort` from Deno's
# servers, DESIGN.md §9). The first real build is where this file is proven;
# keep its steps plain.

ARG DENO_VERSION=2.9.6

# --- build: compile main.ts with its npm dependencies into one binary ----------
FROM denoland/deno:debian-${DENO_VERSION} AS build
WORKDIR /src
# Dependencies first, so that a code change does not download them again.
COPY deno.json deno.lock ./
COPY main.ts ./
COPY mod/ mod/
COPY manager/ manager/
COPY agent/ agent/
# --frozen: fail rather than resolve anything the lock file does not pin.
RUN deno install --frozen --entrypoint main.ts
RUN mkdir -p /out \
 && deno compile --frozen -A -o /out/vif main.ts \
 && /out/vif version

# --- sftp-server: the agent serves the app's volumes with it (no sshd) ----------
# It links glibc only, which the run image has.
FROM debian:12-slim AS sftp
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssh-sftp-server \
 && ldd /usr/lib/openssh/sftp-server

# --- run: glibc and libgcc only, no shell, no package manager ------------------
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="vif" \
      org.opencontainers.image.description="vif traffic-manager: makes a Kubernetes cluster's network local"
COPY --from=build /out/vif /vif
COPY --from=sftp /usr/lib/openssh/sftp-server /usr/lib/openssh/sftp-server
# distroless "nonroot" is uid/gid 65532, as the Deployment's securityContext and the
# agent's say; its /etc/passwd names it, which sftp-server needs.
USER 65532:65532
EXPOSE 8081
ENTRYPOINT ["/vif", "--serve"]
