FROM alpine
HEALTHCHECK --timeout=soon CMD true
