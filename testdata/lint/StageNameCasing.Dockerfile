FROM alpine AS Builder
