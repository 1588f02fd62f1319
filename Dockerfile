# One image with every Hookstream binary; the service is chosen by the command.
# The web console: built from the npm packages console/package-lock.json pins.
FROM node:20-bookworm-slim AS console
WORKDIR /console
COPY console/package.json console/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY console/ ./
RUN npm run build

FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
COPY . .
# --locked: the image is built from the dependency versions the tests ran with.
RUN cargo build --release --locked --bins \
    && mkdir /out \
    && cp target/release/hookstream-ingest target/release/hookstream-dispatcher \
          target/release/hookstream-retry-tier target/release/hookstream-replay \
          target/release/hookstream /out/

FROM debian:bookworm-slim
# libssl3: librdkafka's TLS and SASL/SCRAM to the brokers; reqwest's TLS to endpoints.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 hookstream
COPY --from=build /out/ /usr/local/bin/
COPY --from=console /console/dist/ /usr/share/hookstream/console/
# Ingest serves the console at /console from here (unset the variable to serve none).
ENV HOOKSTREAM_CONSOLE_DIR=/usr/share/hookstream/console
# Numeric, so Kubernetes' runAsNonRoot can check it is not root without a passwd lookup.
USER 10001:10001
