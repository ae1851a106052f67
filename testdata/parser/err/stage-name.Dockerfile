FROM alpine AS 1bad
