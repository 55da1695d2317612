# The build swarm's binaries in one image, for docker-compose.yml (or any container runtime):
#   docker build -t build-swarm:latest .
# Stage 1 builds with the Rust toolchain the workspace requires; stage 2 is a slim runtime with
# the five binaries and the sample configs, running as an unprivileged user.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
    -p swarm-coordinator -p swarm-drone -p swarm-dashboard -p swarm-binhost -p swarmctl

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin swarm
COPY --from=build /src/target/release/swarm-coordinator /usr/local/bin/swarm-coordinator
COPY --from=build /src/target/release/swarm-drone /usr/local/bin/swarm-drone
COPY --from=build /src/target/release/swarm-dashboard /usr/local/bin/swarm-dashboard
COPY --from=build /src/target/release/swarm-binhost /usr/local/bin/swarm-binhost
COPY --from=build /src/target/release/swarmctl /usr/local/bin/swarmctl
COPY config/ /etc/swarm/
USER swarm
# Each service says which binary to run (docker-compose.yml's `command`).
CMD ["swarmctl", "--help"]
