FROM alpine
COPY --from=1 /x /x
