# Keelson's operator image for people who build with Docker. The image CI
# tests is built by `make image` (e2e/image/build.sh) without a Docker
# daemon; this file follows the same recipe and gives the same contents:
# a static binary (glibc, crt-static, profile `image`: release, stripped), the CA bundle, names for
# user 65532, on an empty base; non-root, read-only root filesystem in mind.
#
#   docker build -t ghcr.io/keelson-dev/keelson:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN RUSTFLAGS="-C target-feature=+crt-static" cargo build --profile image --locked \
      --target x86_64-unknown-linux-gnu -p keelson-operator --bin keelson \
    && cp target/x86_64-unknown-linux-gnu/image/keelson /keelson \
    && mkdir -p /rootfs/etc/ssl/certs \
    && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
    && printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n' > /rootfs/etc/passwd \
    && printf 'root:x:0:\nnonroot:x:65532:\n' > /rootfs/etc/group

FROM scratch
COPY --from=build /rootfs/ /
COPY --from=build --chmod=0555 /keelson /keelson
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
ENTRYPOINT ["/keelson"]
CMD ["run"]
