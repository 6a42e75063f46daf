# kubedrs operator image: a static release binary on an empty base (no shell, no libc, non-root).
#   docker build -t ghcr.io/kubedrs/kubedrs:0.1.0 .        (tag: the crate's version, which the chart pulls)
# CI builds the same image without Docker or a registry: `.ci/image` (buildah, from scratch), which runs
# `kubedrs --version` from it; tests/operator_packaging.rs checks that both set the same user, entrypoint
# and command. TLS to the API server is rustls with the cluster's CA, so no OpenSSL and no CA bundle are
# needed at run time.

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# --target keeps build scripts and proc macros dynamic; only the binary is linked statically (glibc). Debug
# info is stripped (136 MB -> 28 MB); symbols stay, so a backtrace still names functions.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target x86_64-unknown-linux-gnu --bin kubedrs \
 && strip --strip-debug -o /usr/local/bin/kubedrs target/x86_64-unknown-linux-gnu/release/kubedrs

FROM scratch
COPY --from=build /usr/local/bin/kubedrs /usr/local/bin/kubedrs
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kubedrs"]
CMD ["run"]
