# One image with every binary of the workspace; compose picks the binary per service.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --workspace --bins \
 && mkdir /out \
 && find target/release -maxdepth 1 -type f -perm -u+x -name 'sr*' -exec cp {} /out/ \;

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/serviceradar serviceradar \
 && mkdir -p /var/lib/serviceradar /bootstrap && chown serviceradar /var/lib/serviceradar /bootstrap
COPY --from=build /out/ /usr/local/bin/
USER serviceradar
WORKDIR /var/lib/serviceradar
