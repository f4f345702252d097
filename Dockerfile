# syntax=docker/dockerfile:1
# Multi-stage build: a static accessbroker binary on a distroless, non-root base.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/accessbroker ./cmd/accessbroker

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/accessbroker /usr/local/bin/accessbroker
USER nonroot:nonroot
WORKDIR /var/lib/accessbroker
EXPOSE 8080
# Mount the config (and the signing key it names) at /etc/accessbroker; keep the SQLite
# database on a volume at /var/lib/accessbroker.
ENTRYPOINT ["/usr/local/bin/accessbroker"]
CMD ["serve", "--config", "/etc/accessbroker/config.yaml"]
