# Keelson's operator image: a static (musl) binary on a distroless base that
# runs as non-root with a read-only root filesystem (see manifests/).
#
#   docker build -t ghcr.io/keelson-dev/keelson:0.1.0 .

FROM rust:1.92-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl -p keelson-operator --bin keelson \
    && cp target/x86_64-unknown-linux-musl/release/keelson /keelson

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /keelson /keelson
USER 65532:65532
ENTRYPOINT ["/keelson"]
CMD ["run"]
