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
COPY --from=build /out/accessbroker /usr/local/bin/accessbroker
# The data directory belongs to nonroot (uid 65532) whatever the builder: WORKDIR alone would
# create it as root with the classic builder, and a fresh named volume copies this ownership.
COPY --from=build --chown=65532:65532 /out/data /var/lib/accessbroker
USER nonroot:nonroot
WORKDIR /var/lib/accessbroker
EXPOSE 8080
# Mount the config (and the signing key it names) at /etc/accessbroker; keep the SQLite
# database on a volume at /var/lib/accessbroker.
ENTRYPOINT ["/usr/local/bin/accessbroker"]
CMD ["serve", "--config", "/etc/accessbroker/config.yaml"]
