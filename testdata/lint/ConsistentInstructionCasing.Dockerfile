FROM alpine
RUN a
run b
RUN c
