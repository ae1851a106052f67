FROM alpine
RUN --network=hots true
