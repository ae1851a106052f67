FROM alpine
RUN --mount=type=cache,targte=/root/.cache true
