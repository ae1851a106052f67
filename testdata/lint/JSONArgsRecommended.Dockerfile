FROM alpine
CMD my-server --port 80
