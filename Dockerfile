# The taskloop program on Debian 12, for docker-compose.yml: the service, the one-shot
# producer and the checker all run this image.
#
#   docker build -t taskloop:local .
#   docker run --rm taskloop:local taskloop check /etc/taskloop/compose.yaml
FROM debian:12.8-slim

# The same packages as a developer machine (scripts/install-deps.sh): compilers and
# libraries to build, python3 and kcat for the checker.
COPY scripts/install-deps.sh /opt/taskloop/scripts/install-deps.sh
RUN /opt/taskloop/scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*

# Only what the build needs (build directories of a working tree stay out).
WORKDIR /opt/taskloop
COPY CMakeLists.txt ./
COPY cmake cmake
COPY framework framework
COPY adapters adapters
COPY examples examples
COPY cmd cmd
COPY config config
COPY tests/e2e tests/e2e
RUN cmake -S . -B /tmp/build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTL_BUILD_TESTS=OFF \
      -DTL_BUILD_BENCH=OFF \
    && cmake --build /tmp/build -j"$(nproc)" --target taskloop_cli \
    && install -m 0755 /tmp/build/cmd/taskloop/taskloop /usr/local/bin/taskloop \
    && rm -rf /tmp/build

COPY config/compose.yaml /etc/taskloop/compose.yaml
RUN mkdir -p /var/lib/taskloop
VOLUME /var/lib/taskloop
EXPOSE 9464
CMD ["taskloop", "run", "/etc/taskloop/compose.yaml"]
