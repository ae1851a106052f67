FROM alpine
COPPY . /app
