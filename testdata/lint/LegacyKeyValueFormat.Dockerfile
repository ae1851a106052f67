FROM alpine
ENV KEY value
