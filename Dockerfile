# syntax=docker/dockerfile:1
# Multi-stage build: a static accessbroker binary on a distroless, non-root base.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/accessbroker ./cmd/accessbroker \
    && mkdir -p /out/data

# distroless/static: CA certificates and tzdata, no shell, no libc (the binary is static:
# modernc SQLite and pgx are pure Go).
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="accessbroker" \
      org.opencontainers.image.description="Just-in-time production access: Slack requests, PagerDuty on-call, short-lived credentials, durable revocation, tamper-evident audit log" \
      org.opencontainers.image.source="https://github.com/accessbroker/accessbroker" \
      org.opencontainers.image.documentation="https://github.com/accessbroker/accessbroker/blob/main/README.md" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/accessbroker /usr/local/bin/accessbroker
# The data directory belongs to nonroot (uid 65532) whatever the builder: WORKDIR alone would
# create it as root with the classic builder, and a fresh named volume copies this ownership.
COPY --from=build --chown=65532:65532 /out/data /var/lib/accessbroker
USER nonroot:nonroot
WORKDIR /var/lib/accessbroker
EXPOSE 8080
# Mount the config (and the signing key it names) at /etc/accessbroker; keep the SQLite
# database on a volume at /var/lib/accessbroker.
# No shell in the image: the binary asks its own /readyz.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/accessbroker", "healthcheck", "--config", "/etc/accessbroker/config.yaml"]
ENTRYPOINT ["/usr/local/bin/accessbroker"]
CMD ["serve", "--config", "/etc/accessbroker/config.yaml"]
