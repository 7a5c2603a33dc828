# syntax=docker/dockerfile:1
# tidemark's container image: the `dist` build (release without line tables, stripped; see
# Cargo.toml), on distroless cc (glibc, CA certificates, no shell), as a non-root user.
#   docker build -t tidemark:0.1.0 .
#   docker run --rm tidemark:0.1.0 --help
# The default mappings (builtin:aws) and the JSON Schemas are compiled into the binary; a copy of
# the mappings is under /usr/share/tidemark/mappings to start custom ones from.

# The toolchain's Debian release matches the runtime image's, so the binary's glibc is there.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# Cargo reads every target the manifest declares, the benchmark included, before building one.
COPY bench/port/main.rs bench/port/main.rs
COPY mappings mappings
COPY schemas schemas
COPY src src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked --bin tidemark \
    && install -D -m 0755 target/dist/tidemark /out/usr/local/bin/tidemark
# Shell completions and the man page, generated from the same clap definitions as the binary.
RUN mkdir -p /out/usr/share/bash-completion/completions /out/usr/share/zsh/site-functions \
        /out/usr/share/fish/vendor_completions.d /out/usr/share/man/man1 /out/usr/share/tidemark \
    && /out/usr/local/bin/tidemark completions bash > /out/usr/share/bash-completion/completions/tidemark \
    && /out/usr/local/bin/tidemark completions zsh > /out/usr/share/zsh/site-functions/_tidemark \
    && /out/usr/local/bin/tidemark completions fish > /out/usr/share/fish/vendor_completions.d/tidemark.fish \
    && /out/usr/local/bin/tidemark man --out-dir /out/usr/share/man/man1 \
    && cp -r mappings /out/usr/share/tidemark/mappings

FROM gcr.io/distroless/cc-debian12:nonroot
# checkov:skip=CKV_DOCKER_2:Kubernetes probes /healthz and /readyz (deploy/kubernetes) and ignores HEALTHCHECK; the distroless image has no shell or HTTP client to run one with.
LABEL org.opencontainers.image.title="tidemark" \
      org.opencontainers.image.description="Reconciles AWS resources from many accounts into Port's software catalog" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/ /
# The uid and gid of distroless's nonroot user, which deploy/kubernetes runs as too.
USER 65532:65532
# `tidemark watch` with no -c reads tidemark.yaml here: mount the config folder at /etc/tidemark.
WORKDIR /etc/tidemark
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/tidemark"]
CMD ["watch", "--listen=0.0.0.0:9090"]
