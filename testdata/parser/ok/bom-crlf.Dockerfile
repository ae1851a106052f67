FROM alpine
RUN echo a \
    b
ENV K=v
