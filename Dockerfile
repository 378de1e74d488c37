# syntax=docker/dockerfile:1
#
# Two stages: a musl builder producing a fully static binary, then an image
# holding nothing but that binary. No CA bundle is needed (webpki-roots are
# compiled in), no libc, no shell.
#
#   docker build -t llmhop .
#   docker run --rm -p 8080:8080 -v "$PWD/config.json:/config.json:ro" llmhop --config /config.json

FROM rust:1-alpine AS build
# musl-dev: crt files and headers for ring's C code.
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
# The Alpine toolchain's host triple is already <arch>-unknown-linux-musl, so
# the same line builds amd64 and arm64 images; musl binaries are static.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-musl" \
 && cargo build --release --locked --target "$target" \
 && install -D -m 0555 "target/$target/release/llmhop" /out/llmhop

FROM scratch
COPY --from=build /out/llmhop /llmhop
USER 65534:65534
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/llmhop"]
CMD ["--config", "/config.json"]
