FROM alpine
COPY --chmod=999999 a /b
