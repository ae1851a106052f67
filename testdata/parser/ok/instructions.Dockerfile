ARG VERSION=1.0 OTHER
from debian:bookworm as base
LABEL org.opencontainers.image.version="$VERSION" description='a "quoted" value'
LABEL legacy value with spaces
maintainer someone@example.com
EXPOSE 80 443/tcp 53/udp
ENV A=1 B="two words" C=three\ words
ENV LEGACY the rest of the line
WORKDIR /app
USER app:app
VOLUME ["/data", "/logs"]
VOLUME /cache /tmp
STOPSIGNAL SIGTERM
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ONBUILD COPY . /src
ONBUILD RUN make
HEALTHCHECK NONE
CMD echo "shell form"
ENTRYPOINT ["/entry.sh"]
COPY -- --odd-name /dst/
ADD src1 src2 /dst/
