FROM alpine
COPY --link --link a /b
