# The taskloop program on Debian 12, for docker-compose.yml: the service, the one-shot
# producer and the checker all run this image.
#
#   docker build -t taskloop:local .
#   docker run --rm taskloop:local taskloop check /etc/taskloop/compose.yaml
#
# Two stages: `build` has the compiler and the -dev packages and builds the program;
# the image itself has only the libraries it runs with (and what the checker uses:
# python3, curl, kcat), no compiler, and runs as the user taskloop (uid 10001).

# ---------------------------------------------------------------- build
FROM debian:12-slim AS build

# The same packages as a developer machine (scripts/install-deps.sh), without the
# browser the dashboard's test drives.
COPY scripts/install-deps.sh /opt/taskloop/scripts/install-deps.sh
RUN /opt/taskloop/scripts/install-deps.sh --no-test-extras && rm -rf /var/lib/apt/lists/*

# Only what the build needs (build directories of a working tree stay out).
WORKDIR /opt/taskloop
COPY CMakeLists.txt ./
COPY cmake cmake
COPY framework framework
COPY adapters adapters
COPY examples examples
COPY cmd cmd
COPY config config
RUN cmake -S . -B /tmp/build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTL_BUILD_TESTS=OFF \
      -DTL_BUILD_BENCH=OFF \
    && cmake --build /tmp/build -j"$(nproc)" --target taskloop_cli \
    && install -m 0755 /tmp/build/cmd/taskloop/taskloop /usr/local/bin/taskloop

# ---------------------------------------------------------------- runtime
FROM debian:12-slim

# The shared libraries the program links (librdkafka, libzmq, libfyaml,
# libmicrohttpd, jansson, libsodium), CA certificates for brokers over TLS, and the checker's
# tools (tests/e2e/check_deployment.sh: bash, python3 with PyYAML, curl, kcat).
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends \
         librdkafka1 libzmq5 libfyaml0 libmicrohttpd12 libjansson4 libsodium23 ca-certificates \
         curl kcat python3 python3-yaml \
    && rm -rf /var/lib/apt/lists/*

# A fixed uid, so that volumes and file ownership outside the container can rely on it.
RUN groupadd --system --gid 10001 taskloop \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/taskloop \
         --shell /usr/sbin/nologin taskloop \
    && mkdir -p /var/lib/taskloop && chown 10001:10001 /var/lib/taskloop

COPY --from=build /usr/local/bin/taskloop /usr/local/bin/taskloop
COPY config/compose.yaml /etc/taskloop/compose.yaml
COPY tests/e2e /opt/taskloop/tests/e2e

USER 10001:10001
WORKDIR /var/lib/taskloop
VOLUME /var/lib/taskloop
EXPOSE 9464
CMD ["taskloop", "run", "/etc/taskloop/compose.yaml"]
