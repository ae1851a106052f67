FROM alpine
COPPY a b
RUN --mount=type=nosuch true
HEALTHCHECK --retries=-1 CMD true
COPY --from=nope1 a
