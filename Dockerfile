# syntax=docker/dockerfile:1
# The huddle server: signaling, bundled TURN and the demo page in one static
# binary on a minimal, non-root image. See README.md, "Docker".

FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG HUDDLE_VERSION=devel
RUN HUDDLE_VERSION="$HUDDLE_VERSION" scripts/build.sh /out/huddle ./cmd/huddle

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/huddle /huddle
USER nonroot:nonroot
# TURN relays need a port range reachable from the clients; a small one
# keeps Docker's port mapping manageable. With --network host, widen it.
ENV HUDDLE_TURN_RELAY_PORTS=49160-49200
EXPOSE 8080/tcp 3478/udp 3478/tcp 49160-49200/udp
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/huddle", "healthcheck"]
ENTRYPOINT ["/huddle"]
