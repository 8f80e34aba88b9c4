# syntax=docker/dockerfile:1
# TradeServe: a multi-stage build. The runtime image is Debian slim with the binary, the bundled
# models and market data, running as a non-root user. See deploy/README.md.
#
#   docker build -t tradeserve .
#   docker run -p 8080:8080 -e TRADESERVE_AUTH__ALLOW_INSECURE=true tradeserve   # try it (no keys)
#
# Listening on 0.0.0.0 needs API keys (TRADESERVE_AUTH__KEYS_FILE) or the explicit insecure flag.

# --- build ---------------------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
# librdkafka is compiled from source by rdkafka-sys: a C/C++ toolchain, CMake and zlib.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config zlib1g-dev python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tradeserve \
 && strip target/release/tradeserve

# --- runtime -------------------------------------------------------------------------------
FROM debian:bookworm-slim
# curl for the health check; ca-certificates for TLS to MLflow, Kafka and Redis.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /opt/tradeserve --shell /usr/sbin/nologin tradeserve
WORKDIR /opt/tradeserve
COPY --from=build /src/target/release/tradeserve /usr/local/bin/tradeserve
COPY models ./models
COPY data ./data
COPY config/tradeserve.example.toml ./config/tradeserve.example.toml
# The audit log, control state, model cache and Kafka spool: a volume that must outlive the
# container (decisions acknowledged to clients are in it until Kafka has them).
RUN mkdir -p /opt/tradeserve/var && chown tradeserve:tradeserve /opt/tradeserve/var
VOLUME ["/opt/tradeserve/var"]
USER 10001:10001
EXPOSE 8080
# Liveness only: readiness (models loaded, sinks recording) is for the load balancer.
HEALTHCHECK --interval=10s --timeout=2s --start-period=20s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/health/live"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["tradeserve"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
