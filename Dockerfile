# replog node image: the static `replog` binary on an empty base.
#
# FROM scratch needs no registry, so this builds on machines that cannot pull images. Build the
# binary on the host first (the README's Docker block does both steps):
#
#   RUSTFLAGS='-C target-feature=+crt-static' \
#     cargo build --release --target x86_64-unknown-linux-gnu
#   docker-compose up --build
#
# The binary is statically linked (glibc, crt-static) and resolves peer names with its own DNS
# resolver (hickory, reading /etc/resolv.conf and /etc/hosts, which Docker provides), so it
# needs no shared libraries, NSS modules or shell. The compose healthcheck runs the binary
# itself (`replog status --json`), so no curl is needed either.
FROM scratch

# Path of the binary inside the build context; .dockerignore lets only this file through.
ARG BINARY=target/x86_64-unknown-linux-gnu/release/replog
COPY ${BINARY} /replog

# Container defaults; every other setting comes from REPLOG_<SECTION>_<KEY> variables
# (see docker-compose.yml) or a config file mounted and passed with --config.
ENV REPLOG_NODE_DATA_DIR=/data \
    REPLOG_LOG_FILE=/log/app.log

ENTRYPOINT ["/replog"]
CMD ["serve"]
