# syntax=docker/dockerfile:1
# Build a static binary, then ship it alone on a distroless base (no shell, non-root).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /pushbridge .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /pushbridge /pushbridge
ENV PORT=8080
EXPOSE 8080
USER nonroot:nonroot
ENTRYPOINT ["/pushbridge"]
CMD ["serve"]
