FROM alpine AS a
COPY --from=later /x /x
FROM alpine AS later
