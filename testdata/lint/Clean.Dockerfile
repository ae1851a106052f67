# syntax=docker/dockerfile:1
ARG BASE=alpine:3.20
FROM $BASE AS build
WORKDIR /src
ENV PATH=/opt/bin:$PATH
COPY --chmod=0755 build.sh .
RUN ./build.sh
FROM scratch
COPY --from=build /src/out /out
ENTRYPOINT ["/out"]
