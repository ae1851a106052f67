FROM alpine
HEALTHCHECK --interval=1ns CMD true
