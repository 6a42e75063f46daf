# kubedrs operator image: build with cargo, run on distroless (glibc, no shell, non-root).
#   docker build -t ghcr.io/kubedrs/kubedrs:dev .
# TLS to the API server is rustls, so no OpenSSL is needed at run time.

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin kubedrs \
 && cp target/release/kubedrs /usr/local/bin/kubedrs

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/kubedrs /usr/local/bin/kubedrs
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kubedrs"]
CMD ["run"]
