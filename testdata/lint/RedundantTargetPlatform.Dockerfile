FROM --platform=$TARGETPLATFORM alpine
