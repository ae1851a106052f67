FROM alpine AS builder
RUN make
FROM alpine
COPY --from=buidler /out /out
FROM biulder
