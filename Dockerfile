# syntax=docker/dockerfile:1
#
# Priorflow's programs in one image: api (the default command), prefetcher
# and priorflow (the command line). docker-compose.yml builds it; by hand:
#
#   docker build -t priorflow .
#   docker run --rm priorflow priorflow version
#
# The programs are pure Go, so they build with CGO_ENABLED=0 and the runtime
# image needs only CA certificates (s3:// blob stores, TLS to remote
# sources), time zone data (PRIORFLOW_HL7_TIMEZONE) and curl for the
# health checks in docker-compose.yml.
#
# Optional DICOM decoders: the rendered and thumbnail DICOMweb resources
# decode JPEG, JPEG-LS and RLE pixel data with dcmtk (dcmdjpeg, dcmdjpls,
# dcmdrle) and JPEG 2000 with gdcm (gdcmconv) when they are installed; other
# transfer syntaxes need nothing. Include them with
#   docker build --build-arg DICOM_DECODERS=1 -t priorflow .

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/ ./cmd/api ./cmd/prefetcher ./cmd/priorflow

FROM debian:bookworm-slim
ARG DICOM_DECODERS=0
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata curl \
 && if [ "$DICOM_DECODERS" = 1 ]; then apt-get install -y --no-install-recommends dcmtk libgdcm-tools; fi \
 && rm -rf /var/lib/apt/lists/*
# A fixed, unprivileged uid; /data (the api's data dir: blobs when the blob
# store is file://, the STOW spool) belongs to it.
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin priorflow \
 && mkdir -p /data /etc/priorflow \
 && chown priorflow:priorflow /data
COPY --from=build /out/ /usr/local/bin/
COPY config/priorflow.yaml /etc/priorflow/priorflow.yaml
ENV PRIORFLOW_DATA_DIR=/data \
    PRIORFLOW_CONFIG=/etc/priorflow/priorflow.yaml
USER priorflow
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080 2575
CMD ["api"]
