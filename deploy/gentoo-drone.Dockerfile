# A real build machine in a container: swarm-drone in a Gentoo stage3 with the emerge builder,
# for docker-compose.yml's `gentoo` profile (README: "A Gentoo drone in Docker").
#   docker compose --profile gentoo build drone-gentoo
# Stage 1 builds the drone with the Rust toolchain the workspace requires; stage 2 is the official
# Gentoo stage3 with that one binary. The ebuild tree, distfiles and PKGDIR live on volumes: sync
# the tree once with `emerge-webrsync` (see docker-compose.yml). emerge needs root, so the drone
# runs as root, as on a Gentoo build machine.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins -p swarm-drone

FROM gentoo/stage3:latest
COPY --from=build /src/target/release/swarm-drone /usr/local/bin/swarm-drone
COPY config/drone.toml /etc/swarm/drone.toml.sample
# Binary packages as Portage writes them for a binhost: gpkg, one file per build.
RUN printf '%s\n' 'BINPKG_FORMAT="gpkg"' 'FEATURES="${FEATURES} binpkg-multi-instance"' \
    >> /etc/portage/make.conf
CMD ["swarm-drone"]
