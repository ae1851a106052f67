ARG BASE=alpine:3.20
FROM --platform=$BUILDPLATFORM ${BASE} AS build
RUN --mount=type=cache,target=/root/.cache,id=go,sharing=locked,mode=0755,uid=1000,gid=1000 \
    --mount=type=bind,source=go.sum,target=go.sum,rw \
    --mount=type=tmpfs,target=/tmp,size=64m \
    --mount=type=secret,id=token,env=TOKEN,required \
    --mount=type=ssh,id=default,required=true \
    --network=none --security=sandbox \
    go build ./...
FROM scratch
COPY --from=build --chown=1000:1000 --chmod=0644 --link --parents --exclude=*.md --exclude=docs/ src/ /app/
COPY --chmod=u=rwX,go=rX --chown=$UID ["a file", "/dst/"]
ADD --keep-git-dir=true --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d --unpack=false --link=false https://example.com/a.tar.gz /a/
HEALTHCHECK --interval=30s --timeout=1m30s --start-period=0 --start-interval=500ms --retries=3 CMD ["/bin/check", "-q"]
