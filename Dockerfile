# Switchboard: one static binary for every role (gateway, Client, Control).
#
#   docker build -t switchboard .
#   docker compose up -d          (see docker-compose.yml)

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/switchboard ./cmd/switchboard

# distroless/static: no shell, no package manager, CA certificates and
# tzdata included; :nonroot runs as uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/switchboard /usr/local/bin/switchboard
# A non-root user cannot bind 443 without a capability, so the gateway
# listens on 8443 inside and the compose file publishes 443:8443.
ENV SWITCHBOARD_LISTEN=:8443 \
    SWITCHBOARD_DATA_DIR=/var/lib/switchboard
VOLUME ["/var/lib/switchboard"]
EXPOSE 8443
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/switchboard"]
CMD ["serve"]
