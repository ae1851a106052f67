FROM alpine
RUN --mount=type=nosuch,target=/x true
