# The phonesd image: one static binary on distroless, run as an unprivileged
# user, with its data in a volume; it writes nowhere else, so it runs with a
# read-only root file system (compose.yaml sets read_only).
#
#   docker build -t phonesd .
#
# CI has no container engine and does not build the image; it runs
# scripts/check-static, which is this build step (scripts/build-static) and
# the binary run as the image runs it.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum go.work go.work.sum ./
COPY api/go.mod api/go.sum api/
RUN go mod download
COPY . .
RUN scripts/build-static /out/phonesd && mkdir -m 0700 /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/phonesd /usr/local/bin/phonesd
# Owned by nonroot (65532) and 0700, as phonesd makes a data directory: a
# new volume on /data takes both, so that phonesd can write it and no one
# else read it (phonesd warns of a data directory open to others). --chmod
# for a builder that would not carry the mode of the directory over.
COPY --from=build --chown=65532:65532 --chmod=0700 /out/data /data
ENV PHONES_ADDR=0.0.0.0:8080 PHONES_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
USER 65532:65532
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/phonesd", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/phonesd"]
