FROM alpine b
