FROM alpine
RUN echo ÿþ
