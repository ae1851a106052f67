FROM alpine
RUN echo \